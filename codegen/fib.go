package codegen

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/ir"
)

// The address type of "fib saddr|daddr [. iif|. oif] type" (and of
// iptables' -m addrtype) is what nft_fib4_eval_type answers:
// inet_dev_addr_type(net, dev, addr), that is __inet_dev_addr_type in
// net/ipv4/fib_frontend.c:
//
//   - 0.0.0.0 and 255.255.255.255 are BROADCAST, 224.0.0.0/4 MULTICAST;
//   - otherwise the table l3mdev_fib_table(dev) ?: RT_TABLE_LOCAL is taken
//     from net->ipv4.fib_table_hash (no such table: BROADCAST), and the
//     answer is UNICAST unless fib_table_lookup(table, {daddr = addr},
//     FIB_LOOKUP_NOREF) succeeds, in which case it is the route's type
//     (with a device: only if the device is the one of the route's first
//     nexthop, else UNICAST).
//
// No BPF helper answers this (bpf_fib_lookup is a forwarding lookup that
// cannot tell LOCAL from BROADCAST, and netfilter programs do not have it),
// so the program repeats fib_table_lookup itself on the kernel's own,
// live, routing trie: the walk of net/ipv4/fib_trie.c (descent, prefix
// matching, backtracking through tnode parents), the alias checks (prefix
// length, dscp, fib_dead, an error route type ending the lookup, RTNH_F_DEAD),
// and fib_lookup_good_nhc on the nexthops (RTNH_F_DEAD, RTNH_F_LINKDOWN
// with ignore_routes_with_linkdown), for plain nexthops and for nexthop
// objects (single ones and groups, blackhole nexthops). Netfilter programs
// run under RCU, as the kernel's lookup does; every kernel read is a
// bpf_probe_read_kernel at an offset from the running kernel's BTF, so an
// object freed meanwhile cannot fault the program. The walk is one bounded
// loop (an open-coded bpf_iter_num of fibMaxSteps steps, one trie node,
// alias or nexthop per step) that the verifier checks once.
//
// Without a device the table is always RT_TABLE_LOCAL. With one (. iif,
// . oif, --limit-iface-in/out) it is the device's VRF table if the device
// belongs to a VRF: that needs the VRF driver's private data, so such
// rules are refused on kernels that can have VRF devices (see
// vrfPossible). IPv6 (nft_fib6_eval_type) is refused.

// Stack slots of the lookup (see the layout in gen.go). They lie below
// everything a field load must keep (the pktinfo slots, the register
// buffer, a concatenated key being built) and are free while the lookup
// runs: only the reject statement uses them otherwise.
const (
	fibIter  = -512   // struct bpf_iter_num
	fibKey   = -504   // the address looked up, host order
	fibN     = -496   // n: the node visited (the fib_table in fibTable)
	fibPN    = -488   // pn: the node backtracking resumes from
	fibCIdx  = -480   // cindex
	fibFA    = -472   // the fib_alias tried
	fibIdx   = -464   // key ^ the leaf's key
	fibPhase = -456   // the step the next loop iteration takes
	fibRes   = -448   // the answer (RTN_*), fibFault while there is none
	fibFI    = -440   // the fib_info of the alias tried
	fibRd    = -432   // 8 bytes: where a kernel read lands
	fibTmp   = -424   // scratch
	fibHdr   = -512   // 20 bytes, before the loop: the IPv4 header
	fibSel   = slotT1 // the nexthop tried
	fibTmp2  = slotT2 // scratch
)

// fibFault is the answer of a lookup that could not finish: a kernel read
// failed or the walk took more than fibMaxSteps steps.
const fibFault = -1

// fibMaxSteps bounds the walk. Each step visits one node, alias or
// nexthop; a lookup takes a few dozen, far fewer than this.
const fibMaxSteps = 1 << 20

// Steps of the walk.
const (
	fibTable   = iota // find the table in its hash chain
	fibDescend        // fib_table_lookup's step 1: travel to the longest prefix
	fibPrefix         // step 2: prefix matching
	fibBack           // backtrace
	fibAlias          // step 3: the leaf's aliases
	fibNh             // the plain nexthops of fibFI
	fibNhObj          // the nexthop object of fibFI (single or group)
)

// Kernel constants.
const (
	rtTableLocal     = 255        // RT_TABLE_LOCAL
	fibTableHashSize = 256        // FIB_TABLE_HASHSZ with CONFIG_IP_MULTIPLE_TABLES
	rtnhFDead        = 1          // RTNH_F_DEAD
	rtnhFLinkdown    = 16         // RTNH_F_LINKDOWN
	devconfIgnoreLD  = 29         // IPV4_DEVCONF_IGNORE_ROUTES_WITH_LINKDOWN
	keyLength        = 32         // KEYLENGTH
	ipv4McastNet     = 0xe0000000 // ipv4_is_multicast: 224.0.0.0/4
)

// fibLayout holds the kernel struct offsets and sizes the walk uses.
type fibLayout struct {
	stateNet, netHash, netDevconfAll, skbDev, devNet     int32
	tbHlist, tbID, tbData                                int32
	kvKey, kvPos, kvBits, kvSlen, kvChild                int32
	tnKV, tnParent                                       int32
	faList, faInfo, faDscp, faType, faSlen               int32
	fiFlags, fiDead, fiNhs, fiNh, fiFibNh, fibNhSize     int32
	nhcDev, nhcFlags, devIPPtr, inDevIgnoreLD, confIgnLD int32
	nhIsGroup, nhInfo, nhGrp                             int32
	ngNum, ngEntries, ngeSize, ngeNh, niReject, niNhc    int32
}

var fibLayoutOnce = struct {
	once sync.Once
	l    *fibLayout
	err  error
}{}

func loadFIBLayout() (*fibLayout, error) {
	fibLayoutOnce.once.Do(func() {
		fibLayoutOnce.l, fibLayoutOnce.err = readFIBLayout()
	})
	return fibLayoutOnce.l, fibLayoutOnce.err
}

func readFIBLayout() (*fibLayout, error) {
	var l fibLayout
	var firstErr error
	off := func(st, path string) int32 {
		o, err := kernelOffset(st, path)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return int32(o)
	}
	size := func(st string) int32 {
		spec, err := loadKernelBTF()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return 0
		}
		var s *btf.Struct
		if err := spec.TypeByName(st, &s); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("kernel BTF: struct %s: %w", st, err)
			}
			return 0
		}
		return int32(s.Size)
	}
	l.stateNet = off("nf_hook_state", "net")
	l.skbDev = off("sk_buff", "dev")
	l.devNet = off("net_device", "nd_net.net")
	l.netHash = off("net", "ipv4.fib_table_hash")
	l.netDevconfAll = off("net", "ipv4.devconf_all")
	l.tbHlist = off("fib_table", "tb_hlist")
	l.tbID = off("fib_table", "tb_id")
	l.tbData = off("fib_table", "tb_data")
	l.kvKey = off("key_vector", "key")
	l.kvPos = off("key_vector", "pos")
	l.kvBits = off("key_vector", "bits")
	l.kvSlen = off("key_vector", "slen")
	l.kvChild = off("key_vector", "leaf") // the union of leaf and tnode[]
	l.tnKV = off("tnode", "kv")
	l.tnParent = off("tnode", "parent")
	l.faList = off("fib_alias", "fa_list")
	l.faInfo = off("fib_alias", "fa_info")
	l.faDscp = off("fib_alias", "fa_dscp")
	l.faType = off("fib_alias", "fa_type")
	l.faSlen = off("fib_alias", "fa_slen")
	l.fiFlags = off("fib_info", "fib_flags")
	l.fiDead = off("fib_info", "fib_dead")
	l.fiNhs = off("fib_info", "fib_nhs")
	l.fiNh = off("fib_info", "nh")
	l.fiFibNh = off("fib_info", "fib_nh") + off("fib_nh", "nh_common")
	l.fibNhSize = size("fib_nh")
	l.nhcDev = off("fib_nh_common", "nhc_dev")
	l.nhcFlags = off("fib_nh_common", "nhc_flags")
	l.devIPPtr = off("net_device", "ip_ptr")
	l.inDevIgnoreLD = off("in_device", fmt.Sprintf("cnf.data[%d]", devconfIgnoreLD-1))
	l.confIgnLD = off("ipv4_devconf", fmt.Sprintf("data[%d]", devconfIgnoreLD-1))
	l.nhIsGroup = off("nexthop", "is_group")
	l.nhInfo = off("nexthop", "nh_info")
	l.nhGrp = off("nexthop", "nh_grp")
	l.ngNum = off("nh_group", "num_nh")
	l.ngEntries = off("nh_group", "nh_entries")
	l.ngeSize = size("nh_grp_entry")
	l.ngeNh = off("nh_grp_entry", "nh")
	l.niReject = off("nh_info", "reject_nh")
	l.niNhc = off("nh_info", "fib_nhc")
	if firstErr != nil {
		return nil, firstErr
	}
	// fib_get_table with CONFIG_IP_MULTIPLE_TABLES: 256 hash chains.
	// netns_ipv4 has rules_ops only with that option.
	if _, err := kernelOffset("netns_ipv4", "rules_ops"); err != nil {
		return nil, fmt.Errorf("kernel without CONFIG_IP_MULTIPLE_TABLES (fib_table_hash layout differs): %w", err)
	}
	return &l, nil
}

// fibWalkKernel is the kernel series whose fib_table_lookup (and the
// structures it walks) the lookup repeats, and against which the
// differential tests (difftest.TestFIBTwin, TestFIBTwinManyRoutes,
// TestAddrtypeTwin) check it. The BTF offsets follow the running kernel,
// but an algorithm change would not show in them, so other kernels are
// refused until the tests have been run there and the series added.
const fibWalkKernel = "6.18"

// fibWalkVerified reports whether the running kernel belongs to
// fibWalkKernel, and its release.
func fibWalkVerified() (release string, ok bool) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown (" + err.Error() + ")", false
	}
	release = unix.ByteSliceToString(u.Release[:])
	return release, kernelSeries(release) == fibWalkKernel
}

// kernelSeries returns the major.minor of a kernel release ("6.18.44-1"
// gives "6.18").
func kernelSeries(release string) string {
	dots := 0
	for i, c := range release {
		switch {
		case c == '.':
			dots++
			if dots == 2 {
				return release[:i]
			}
		case c < '0' || c > '9':
			return release[:i]
		}
	}
	return release
}

// vrfPossible reports whether the running kernel can have VRF devices,
// whose l3mdev table a device-restricted lookup would use: the driver is
// built in (its struct in the kernel's BTF) or available as a module.
func vrfPossible() bool {
	vrfOnce.Do(func() { vrfAnswer = findVRF() })
	return vrfAnswer
}

var (
	vrfOnce   sync.Once
	vrfAnswer bool
)

func findVRF() bool {
	if spec, err := loadKernelBTF(); err == nil {
		var s *btf.Struct
		if spec.TypeByName("net_vrf", &s) == nil {
			return true
		}
	}
	if _, err := os.Stat("/sys/module/vrf"); err == nil {
		return true
	}
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	rel := unix.ByteSliceToString(u.Release[:])
	m, _ := filepath.Glob(filepath.Join("/lib/modules", rel, "kernel/drivers/net/vrf.ko*"))
	if len(m) > 0 {
		return true
	}
	if b, err := os.ReadFile(filepath.Join("/lib/modules", rel, "modules.builtin")); err == nil && containsLine(b, "kernel/drivers/net/vrf.ko") {
		return true
	}
	return false
}

func containsLine(b []byte, line string) bool {
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if string(b[:i]) == line {
			return true
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return false
}

// fibRefusal says why fib … type cannot be compiled for the target, or "".
func (g *gen) fibRefusal(f *ir.Field) string {
	switch g.tgt.Type {
	case Netfilter, CgroupSKB:
	case XDP, TC:
		return fmt.Sprintf("fib … type is only supported at netfilter hooks (ip and inet tables), not at %s: "+
			"a netdev table answers IPv6 packets with nft_fib6_eval_type, which is not implemented", g.tgt.Type)
	default:
		return fmt.Sprintf("fib … type is not supported at %s", g.tgt.Type)
	}
	if g.tgt.ProtoFamily != ir.FamilyIPv4 {
		return "fib … type for IPv6 packets (nft_fib6_eval_type) is not supported, only IPv4; in an inet table, use an ip table"
	}
	if rel, ok := fibWalkVerified(); !ok {
		return fmt.Sprintf("fib … type repeats the routing-trie lookup of Linux %s, which was checked against the kernel; "+
			"this kernel is %s, whose lookup may differ", fibWalkKernel, rel)
	}
	if f.FIB&(ir.FIBIif|ir.FIBOif) != 0 {
		in := f.FIB&ir.FIBIif != 0
		if g.device(in) == devAbsent {
			return "the kernel refuses fib … type restricted to a device the hook does not have"
		}
		if vrfPossible() {
			return "fib … type restricted to a device (. iif, . oif) is not supported on a kernel with VRF devices: the table would be the device's VRF table, which only the VRF driver knows"
		}
	}
	return ""
}

// loadFIB places the address type of the packet's source or destination
// address in the buffer (a host-order u32), or jumps to fail where
// nft_fib4_eval_type breaks (an IPv4 header shorter than 20 bytes).
func (g *gen) loadFIB(f *ir.Field, fail string) error {
	if why := g.fibRefusal(f); why != "" {
		return g.unsupported("%s", why)
	}
	if f.Len != 4 {
		return g.unsupported("fib type load of %d bytes, the result has 4", f.Len)
	}
	l, err := loadFIBLayout()
	if err != nil {
		return g.unsupported("fib … type: %v", err)
	}
	iterNew, err := kfuncID("bpf_iter_num_new")
	if err != nil {
		return err
	}
	iterNext, err := kfuncID("bpf_iter_num_next")
	if err != nil {
		return err
	}
	iterDestroy, err := kfuncID("bpf_iter_num_destroy")
	if err != nil {
		return err
	}
	kfunc := func(id int64) asm.Instruction {
		return asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Call), Src: asm.PseudoKfuncCall, Constant: id}
	}
	w := &fibWalk{g: g, l: l, f: f}
	w.done = g.b.newLabel("fib_done")
	store := g.b.newLabel("fib_store")

	// skb_header_pointer(skb, noff, sizeof(struct iphdr)): the whole
	// header must be there.
	g.b.emit(asm.LoadMem(asm.R2, asm.R10, slotNH, asm.DWord))
	g.loadBytes(fibHdr, 20)
	g.b.emit(asm.JNE.Imm(asm.R0, 0, fail))
	addrOff := int16(16)
	if f.FIB&ir.FIBSaddr != 0 {
		addrOff = 12
	}
	g.b.emit(
		asm.LoadMem(asm.R1, asm.R10, fibHdr+addrOff, asm.Word),
		asm.BSwap(asm.R1, asm.Word),
		asm.Mov.Reg32(asm.R1, asm.R1),
		asm.StoreMem(asm.R10, fibKey, asm.R1, asm.DWord),
		// ipv4_is_zeronet (0.0.0.0 only, since 0.0.0.0/8 became
		// unicast), ipv4_is_lbcast: BROADCAST.
		asm.Mov.Imm(asm.R0, int32(ir.AddrBroadcast)),
		asm.JEq.Imm(asm.R1, 0, store),
		asm.JEq.Imm32(asm.R1, -1, store),
		// ipv4_is_multicast: MULTICAST.
		asm.Mov.Imm(asm.R0, int32(ir.AddrMulticast)),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 28),
		asm.JEq.Imm(asm.R2, ipv4McastNet>>28, store),
	)
	early := g.b.newLabel("fib_early_fault")
	// The table's hash chain: net->ipv4.fib_table_hash[RT_TABLE_LOCAL &
	// (FIB_TABLE_HASHSZ - 1)].first. Reads before the loop end at
	// fib_early_fault.
	if err := w.netPtr(early); err != nil {
		return err
	}
	w.readTo(asm.R3, l.netHash, 8, early)
	w.readTo(asm.R0, int32((rtTableLocal&(fibTableHashSize-1))*8), 8, early)
	g.b.emit(
		asm.StoreMem(asm.R10, fibN, asm.R0, asm.DWord),
		stImm64(asm.R10, fibPhase, fibTable),
		stImm64(asm.R10, fibRes, fibFault),
		stImm64(asm.R10, fibCIdx, 0),
		stImm64(asm.R10, fibPN, 0),
		stImm64(asm.R10, fibFA, 0),
		stImm64(asm.R10, fibIdx, 0),
		stImm64(asm.R10, fibFI, 0),
		stImm64(asm.R10, fibSel, 0),
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, fibIter),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Imm(asm.R3, fibMaxSteps),
		kfunc(iterNew),
	)
	loop := g.b.newLabel("fib_loop")
	g.b.label(loop)
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, fibIter),
		kfunc(iterNext),
		asm.JEq.Imm(asm.R0, 0, w.done),
		asm.LoadMem(asm.R0, asm.R10, fibPhase, asm.DWord),
	)
	w.loop = loop
	steps := []struct {
		phase int32
		emit  func() error
	}{
		{fibTable, w.table}, {fibDescend, w.descend}, {fibPrefix, w.prefix}, {fibBack, w.backtrace},
		{fibAlias, w.alias}, {fibNh, w.plainNexthops}, {fibNhObj, w.nexthopObject},
	}
	labels := make([]string, len(steps))
	for i, s := range steps {
		labels[i] = g.b.newLabel("fib_step")
		g.b.emit(asm.JEq.Imm(asm.R0, s.phase, labels[i]))
	}
	g.b.emit(asm.Ja.Label(w.done))
	for i, s := range steps {
		g.b.label(labels[i])
		if err := s.emit(); err != nil {
			return err
		}
	}
	g.b.label(w.done)
	g.b.emit(
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, fibIter),
		kfunc(iterDestroy),
		asm.LoadMem(asm.R0, asm.R10, fibRes, asm.DWord),
		asm.JEq.Imm(asm.R0, fibFault, fail),
		asm.Ja.Label(store),
	)
	g.b.label(early)
	g.b.emit(asm.Ja.Label(fail))
	g.b.label(store)
	g.b.emit(asm.StoreMem(asm.R10, bufOff, asm.R0, asm.Word))
	return nil
}

// fibWalk emits the steps of the lookup loop.
type fibWalk struct {
	g    *gen
	l    *fibLayout
	f    *ir.Field
	done string // destroy the iterator and answer fibRes
	loop string // the next step
}

func (w *fibWalk) emit(insns ...asm.Instruction) { w.g.b.emit(insns...) }

func (w *fibWalk) label(prefix string) string { return w.g.b.newLabel(prefix) }

func (w *fibWalk) at(label string) { w.g.b.label(label) }

// readTo reads size bytes (1, 2, 4 or 8) at the kernel address src + off
// into R0 (zero-extended) with bpf_probe_read_kernel, jumping to fault if
// the read fails. R1-R5 are clobbered; src may be any of R0-R5.
func (w *fibWalk) readTo(src asm.Register, off int32, size int32, fault string) {
	if src != asm.R3 {
		w.emit(asm.Mov.Reg(asm.R3, src))
	}
	if off != 0 {
		w.emit(asm.Add.Imm(asm.R3, off))
	}
	w.emit(
		asm.Mov.Reg(asm.R1, asm.R10),
		asm.Add.Imm(asm.R1, fibRd),
		asm.Mov.Imm(asm.R2, size),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, fault),
		asm.LoadMem(asm.R0, asm.R10, fibRd, asmSize(uint32(size))),
	)
}

// read is readTo ending the lookup (fibRes is fibFault) on a failed read.
func (w *fibWalk) read(src asm.Register, off, size int32) {
	w.readTo(src, off, size, w.done)
}

// member reads size bytes at off from the object whose address is in
// slot into R0.
func (w *fibWalk) member(slot int16, off int32, size int32) {
	w.slot(asm.R3, slot)
	w.read(asm.R3, off, size)
}

// slot loads a lookup slot into reg.
func (w *fibWalk) slot(reg asm.Register, off int16) {
	w.emit(asm.LoadMem(reg, asm.R10, off, asm.DWord))
}

// put stores reg in a lookup slot.
func (w *fibWalk) put(off int16, reg asm.Register) {
	w.emit(asm.StoreMem(asm.R10, off, reg, asm.DWord))
}

// next stores phase and continues the loop.
func (w *fibWalk) next(phase int32) {
	w.emit(stImm64(asm.R10, fibPhase, int64(phase)), asm.Ja.Label(w.loop))
}

// answer ends the lookup with a constant answer.
func (w *fibWalk) answer(t uint32) {
	w.emit(stImm64(asm.R10, fibRes, int64(t)), asm.Ja.Label(w.done))
}

// table walks the hash chain for the table RT_TABLE_LOCAL (fib_get_table),
// then starts fib_table_lookup: pn = t->kv, cindex = 0, n = child 0.
func (w *fibWalk) table() error {
	l := w.l
	found := w.label("fib_table_found")
	noTable := w.label("fib_no_table")
	eagain := w.label("fib_eagain")
	w.slot(asm.R0, fibN)
	w.emit(asm.JEq.Imm(asm.R0, 0, noTable))
	w.read(asm.R0, l.tbID-l.tbHlist, 4)
	w.emit(asm.JEq.Imm(asm.R0, rtTableLocal, found))
	// The next table of the chain: tb_hlist.next, the node's first member.
	w.member(fibN, 0, 8)
	w.put(fibN, asm.R0)
	w.next(fibTable)
	w.at(noTable)
	// fib_get_table found nothing: __inet_dev_addr_type answers its
	// initial RTN_BROADCAST.
	w.answer(ir.AddrBroadcast)
	w.at(found)
	w.member(fibN, l.tbData-l.tbHlist, 8)
	// pn = t->kv: the root key_vector starts struct trie.
	w.put(fibPN, asm.R0)
	w.read(asm.R0, l.kvChild, 8)
	w.put(fibN, asm.R0)
	w.emit(asm.JEq.Imm(asm.R0, 0, eagain))
	w.next(fibDescend)
	w.at(eagain)
	// An empty trie: -EAGAIN, so RTN_UNICAST.
	w.answer(ir.AddrUnicast)
	return nil
}

// leafFound is fib_table_lookup's "found:" with n a leaf: index = key ^
// n->key, then the aliases of n->leaf.
func (w *fibWalk) leafFound() {
	l := w.l
	w.member(fibN, l.kvKey, 4)
	w.slot(asm.R1, fibKey)
	w.emit(asm.Xor.Reg(asm.R0, asm.R1))
	w.put(fibIdx, asm.R0)
	w.member(fibN, l.kvChild, 8) // n->leaf.first
	w.put(fibFA, asm.R0)
	w.next(fibAlias)
}

// cmpSlenPos leaves n->slen in R0 and n->pos in R1.
func (w *fibWalk) slenPos() {
	w.member(fibN, w.l.kvPos, 1)
	w.put(fibTmp, asm.R0)
	w.member(fibN, w.l.kvSlen, 1)
	w.slot(asm.R1, fibTmp)
}

// descend is one pass of step 1.
func (w *fibWalk) descend() error {
	l := w.l
	toPrefix := w.label("fib_d_prefix")
	leaf := w.label("fib_d_leaf")
	noRecord := w.label("fib_d_norec")
	back := w.label("fib_d_back")
	// index = (key ^ n->key) >> n->pos
	w.member(fibN, l.kvPos, 1)
	w.put(fibTmp, asm.R0)
	w.member(fibN, l.kvKey, 4)
	w.slot(asm.R1, fibKey)
	w.slot(asm.R2, fibTmp)
	w.emit(
		asm.Xor.Reg(asm.R0, asm.R1),
		asm.And.Imm(asm.R2, 63),
		asm.RSh.Reg(asm.R0, asm.R2),
	)
	w.put(fibIdx, asm.R0)
	// if (index >= (1ul << n->bits)) break;
	w.member(fibN, l.kvBits, 1)
	w.emit(
		asm.Mov.Reg(asm.R2, asm.R0),
		asm.And.Imm(asm.R2, 63),
		asm.Mov.Imm(asm.R1, 1),
		asm.LSh.Reg(asm.R1, asm.R2),
	)
	w.slot(asm.R3, fibIdx)
	w.emit(
		asm.JGE.Reg(asm.R3, asm.R1, toPrefix),
		// IS_LEAF(n): bits == 0
		asm.JEq.Imm(asm.R0, 0, leaf),
	)
	// if (n->slen > n->pos) { pn = n; cindex = index; }
	w.slenPos()
	w.emit(asm.JLE.Reg(asm.R0, asm.R1, noRecord))
	w.slot(asm.R0, fibN)
	w.slot(asm.R1, fibIdx)
	w.put(fibPN, asm.R0)
	w.put(fibCIdx, asm.R1)
	w.at(noRecord)
	// n = get_child_rcu(n, index)
	w.slot(asm.R3, fibN)
	w.slot(asm.R1, fibIdx)
	w.emit(
		asm.LSh.Imm(asm.R1, 3),
		asm.Add.Reg(asm.R3, asm.R1),
	)
	w.read(asm.R3, l.kvChild, 8)
	w.put(fibN, asm.R0)
	w.emit(asm.JEq.Imm(asm.R0, 0, back))
	w.next(fibDescend)
	w.at(back)
	w.next(fibBack)
	w.at(toPrefix)
	w.next(fibPrefix)
	w.at(leaf)
	w.leafFound()
	return nil
}

// prefix is one pass of step 2, n not NULL.
func (w *fibWalk) prefix() error {
	l := w.l
	back := w.label("fib_p_back")
	leaf := w.label("fib_p_leaf")
	// prefix_mismatch(key, n): (key ^ prefix) & (prefix | -prefix)
	w.member(fibN, l.kvKey, 4)
	w.slot(asm.R1, fibKey)
	w.emit(
		asm.Mov.Reg32(asm.R2, asm.R0),
		asm.Neg.Imm32(asm.R2, 0),
		asm.Or.Reg32(asm.R2, asm.R0),
		asm.Xor.Reg32(asm.R0, asm.R1),
		asm.And.Reg32(asm.R0, asm.R2),
		asm.JNE.Imm(asm.R0, 0, back),
	)
	// || n->slen == n->pos
	w.slenPos()
	w.emit(asm.JEq.Reg(asm.R0, asm.R1, back))
	// IS_LEAF(n)
	w.member(fibN, l.kvBits, 1)
	w.emit(asm.JEq.Imm(asm.R0, 0, leaf))
	// n = n->tnode[0]; NULL: backtrace.
	w.member(fibN, l.kvChild, 8)
	w.emit(asm.JEq.Imm(asm.R0, 0, back))
	w.put(fibN, asm.R0)
	w.next(fibPrefix)
	w.at(back)
	w.next(fibBack)
	w.at(leaf)
	w.leafFound()
	return nil
}

// backtrace is one pass of the backtrace loop.
func (w *fibWalk) backtrace() error {
	l := w.l
	strip := w.label("fib_b_strip")
	up := w.label("fib_b_up")
	again := w.label("fib_b_again")
	w.slot(asm.R0, fibCIdx)
	w.emit(asm.JNE.Imm(asm.R0, 0, strip))
	// cindex == 0: IS_TRIE(pn) means no route (-EAGAIN).
	w.member(fibPN, l.kvPos, 1)
	w.emit(asm.JLT.Imm(asm.R0, keyLength, up))
	w.answer(ir.AddrUnicast)
	w.at(up)
	// pkey = pn->key; pn = node_parent_rcu(pn); cindex = get_index(pkey, pn)
	w.member(fibPN, l.kvKey, 4)
	w.put(fibTmp2, asm.R0)
	w.member(fibPN, l.tnParent-l.tnKV, 8)
	w.put(fibPN, asm.R0)
	w.read(asm.R0, l.kvPos, 1)
	w.put(fibTmp, asm.R0)
	w.member(fibPN, l.kvKey, 4)
	w.slot(asm.R1, fibTmp2)
	w.slot(asm.R2, fibTmp)
	w.emit(
		asm.Xor.Reg(asm.R0, asm.R1),
		// an unsigned long shifted by pos: pos == KEYLENGTH gives 0.
		asm.And.Imm(asm.R2, 63),
		asm.RSh.Reg(asm.R0, asm.R2),
	)
	w.put(fibCIdx, asm.R0)
	w.next(fibBack)
	w.at(strip)
	// cindex &= cindex - 1; n = pn->tnode[cindex]; NULL: backtrace again.
	w.emit(
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Add.Imm(asm.R1, -1),
		asm.And.Reg(asm.R0, asm.R1),
	)
	w.put(fibCIdx, asm.R0)
	w.emit(asm.LSh.Imm(asm.R0, 3))
	w.slot(asm.R3, fibPN)
	w.emit(asm.Add.Reg(asm.R3, asm.R0))
	w.read(asm.R3, l.kvChild, 8)
	w.emit(asm.JEq.Imm(asm.R0, 0, again))
	w.put(fibN, asm.R0)
	w.next(fibPrefix)
	w.at(again)
	w.next(fibBack)
	return nil
}

// nextAlias moves to the next alias of the leaf.
func (w *fibWalk) nextAlias() {
	w.member(fibFA, w.l.faList, 8) // fa_list.next
	w.put(fibFA, asm.R0)
	w.next(fibAlias)
}

// alias checks one alias of the leaf (hlist_for_each_entry_rcu over
// n->leaf); fibFA holds the hlist node.
func (w *fibWalk) alias() error {
	l := w.l
	miss := w.label("fib_a_miss")
	skip := w.label("fib_a_skip")
	slenOK := w.label("fib_a_slen_ok")
	noErr := w.label("fib_a_noerr")
	plain := w.label("fib_a_plain")
	group := w.label("fib_a_group")
	nhobj := w.label("fib_a_nhobj")
	w.slot(asm.R0, fibFA)
	w.emit(asm.JEq.Imm(asm.R0, 0, miss))
	if l.faList != 0 {
		w.emit(asm.Add.Imm(asm.R0, -l.faList))
		w.put(fibFA, asm.R0)
	}
	// if (fa->fa_slen < KEYLENGTH && index >= (1ul << fa->fa_slen)) continue;
	w.member(fibFA, l.faSlen, 1)
	w.emit(
		asm.JGE.Imm(asm.R0, keyLength, slenOK),
		asm.Mov.Imm(asm.R1, 1),
		asm.LSh.Reg(asm.R1, asm.R0),
	)
	w.slot(asm.R2, fibIdx)
	w.emit(asm.JGE.Reg(asm.R2, asm.R1, skip))
	w.at(slenOK)
	// if (fa->fa_dscp && !fib_dscp_masked_match(fa->fa_dscp, flp))
	// continue: the flow's dscp is 0, which no nonzero fa_dscp matches.
	w.member(fibFA, l.faDscp, 1)
	w.emit(asm.JNE.Imm(asm.R0, 0, skip))
	// if (READ_ONCE(fi->fib_dead)) continue;
	w.member(fibFA, l.faInfo, 8)
	w.put(fibFI, asm.R0)
	w.read(asm.R0, l.fiDead, 1)
	w.emit(asm.JNE.Imm(asm.R0, 0, skip))
	// The flow's scope is RT_SCOPE_UNIVERSE (0): no fib_scope is below.
	// fib_props[fa->fa_type].error is negative for blackhole,
	// unreachable, prohibit, throw, nat and xresolve: the lookup fails
	// and the address is RTN_UNICAST.
	w.member(fibFA, l.faType, 1)
	w.emit(
		asm.JLT.Imm(asm.R0, int32(ir.AddrBlackhole), noErr),
		asm.JGT.Imm(asm.R0, int32(ir.AddrXResolve), noErr),
	)
	w.answer(ir.AddrUnicast)
	w.at(noErr)
	// if (fi->fib_flags & RTNH_F_DEAD) continue;
	w.member(fibFI, l.fiFlags, 4)
	w.emit(
		asm.And.Imm(asm.R0, rtnhFDead),
		asm.JNE.Imm(asm.R0, 0, skip),
	)
	w.emit(stImm64(asm.R10, fibSel, 0))
	w.member(fibFI, l.fiNh, 8)
	w.emit(asm.JEq.Imm(asm.R0, 0, plain))
	// A nexthop object. nexthop_is_blackhole(fi->nh) (a group only with
	// a single entry, that entry) ends the lookup with
	// fib_props[RTN_BLACKHOLE].error: RTN_UNICAST.
	w.put(fibTmp, asm.R0)
	w.read(asm.R0, l.nhIsGroup, 1)
	w.emit(asm.JNE.Imm(asm.R0, 0, group))
	w.member(fibTmp, l.nhInfo, 8)
	w.read(asm.R0, l.niReject, 1)
	w.emit(asm.JEq.Imm(asm.R0, 0, nhobj))
	w.answer(ir.AddrUnicast)
	w.at(group)
	w.member(fibTmp, l.nhGrp, 8)
	w.put(fibTmp, asm.R0)
	w.read(asm.R0, l.ngNum, 2)
	w.emit(asm.JGT.Imm(asm.R0, 1, nhobj))
	w.member(fibTmp, l.ngEntries+l.ngeNh, 8)
	w.read(asm.R0, l.nhInfo, 8)
	w.read(asm.R0, l.niReject, 1)
	w.emit(asm.JEq.Imm(asm.R0, 0, nhobj))
	w.answer(ir.AddrUnicast)
	w.at(nhobj)
	w.next(fibNhObj)
	w.at(plain)
	w.next(fibNh)
	w.at(skip)
	w.nextAlias()
	w.at(miss)
	w.next(fibBack)
	return nil
}

// goodNexthop jumps to bad unless the fib_nh_common at the address in
// fibTmp passes fib_lookup_good_nhc for a flow without an oif: not
// RTNH_F_DEAD, and not RTNH_F_LINKDOWN on a device that ignores routes
// with a link down (ip_ignore_linkdown: the device has an in_device and
// ignore_routes_with_linkdown is set for all devices or for it).
func (w *fibWalk) goodNexthop(bad string) error {
	l := w.l
	good := w.label("fib_nhc_good")
	w.member(fibTmp, l.nhcFlags, 1)
	w.emit(
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.And.Imm(asm.R1, rtnhFDead),
		asm.JNE.Imm(asm.R1, 0, bad),
		asm.And.Imm(asm.R0, rtnhFLinkdown),
		asm.JEq.Imm(asm.R0, 0, good),
	)
	w.member(fibTmp, l.nhcDev, 8)
	w.read(asm.R0, l.devIPPtr, 8)
	w.emit(asm.JEq.Imm(asm.R0, 0, good))
	w.read(asm.R0, l.inDevIgnoreLD, 4)
	w.emit(asm.JNE.Imm(asm.R0, 0, bad))
	if err := w.netPtr(w.done); err != nil {
		return err
	}
	w.read(asm.R3, l.netDevconfAll, 8)
	w.read(asm.R0, l.confIgnLD, 4)
	w.emit(asm.JNE.Imm(asm.R0, 0, bad))
	w.at(good)
	return nil
}

// netPtr leaves the namespace's struct net pointer in R3, or jumps to
// fault. At netfilter hooks it is nft_net(pkt), state->net;
// BPF_PROG_TEST_RUN's hook state has none (hooks always have one), and
// there it is the net of the hook state's device; for cgroup_skb programs
// it is the net of the skb's device (a cgroup_skb program always has one).
func (w *fibWalk) netPtr(fault string) error {
	l := w.l
	haveNet := w.label("fib_net")
	if w.g.tgt.Type == Netfilter {
		w.emit(
			asm.LoadMem(asm.R1, asm.R10, slotState, asm.DWord),
			asm.LoadMem(asm.R3, asm.R1, int16(l.stateNet), asm.DWord),
			asm.JNE.Imm(asm.R3, 0, haveNet),
		)
		// The test run's hook device (its loopback) when the skb has
		// none (output hooks).
		for _, name := range []string{"in", "out"} {
			m, err := kernelMember("nf_hook_state", name)
			if err != nil {
				return err
			}
			next := w.label("fib_net_" + name)
			w.emit(
				asm.LoadMem(asm.R1, asm.R10, slotState, asm.DWord),
				asm.LoadMem(asm.R1, asm.R1, m.Off, asm.DWord),
				asm.JEq.Imm(asm.R1, 0, next),
				asm.LoadMem(asm.R3, asm.R1, int16(l.devNet), asm.DWord),
				asm.JNE.Imm(asm.R3, 0, haveNet),
			)
			w.at(next)
		}
	}
	w.emit(
		asm.LoadMem(asm.R1, asm.R10, slotSkb, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, int16(l.skbDev), asm.DWord),
		asm.JEq.Imm(asm.R1, 0, fault),
		asm.LoadMem(asm.R3, asm.R1, int16(l.devNet), asm.DWord),
		asm.JEq.Imm(asm.R3, 0, fault),
	)
	w.at(haveNet)
	w.emit(asm.Mov.Reg(asm.R3, asm.R3))
	return nil
}

// found ends the lookup with the alias' type; with a device restriction,
// __inet_dev_addr_type answers RTN_UNICAST unless the device is the one of
// the route's first nexthop, whose fib_nh_common the caller left in
// fibTmp2.
func (w *fibWalk) found() error {
	w.member(fibFA, w.l.faType, 1)
	w.put(fibRes, asm.R0)
	if w.f.FIB&(ir.FIBIif|ir.FIBOif) == 0 {
		w.emit(asm.Ja.Label(w.done))
		return nil
	}
	in := w.f.FIB&ir.FIBIif != 0
	w.member(fibTmp2, w.l.nhcDev, 8)
	w.put(fibTmp2, asm.R0)
	if err := w.g.loadDevPtr(w.g.device(in), in); err != nil {
		return err
	}
	w.slot(asm.R0, fibTmp2)
	w.emit(
		asm.JEq.Imm(asm.R1, 0, w.done),
		asm.JEq.Reg(asm.R0, asm.R1, w.done),
	)
	w.answer(ir.AddrUnicast)
	return nil
}

// plainNexthops tries fi->fib_nh[sel] (fib_info_num_path = fib_nhs); when
// none is good, the next alias.
func (w *fibWalk) plainNexthops() error {
	l := w.l
	bad := w.label("fib_nh_bad")
	noMore := w.label("fib_nh_end")
	w.member(fibFI, l.fiNhs, 4)
	w.slot(asm.R1, fibSel)
	w.emit(asm.JSGE.Reg32(asm.R1, asm.R0, noMore))
	w.slot(asm.R0, fibFI)
	w.emit(
		asm.Mul.Imm(asm.R1, l.fibNhSize),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.Add.Imm(asm.R0, l.fiFibNh),
	)
	w.put(fibTmp, asm.R0)
	if err := w.goodNexthop(bad); err != nil {
		return err
	}
	// fib_info_nhc(fi, 0)
	w.slot(asm.R0, fibFI)
	w.emit(asm.Add.Imm(asm.R0, l.fiFibNh))
	w.put(fibTmp2, asm.R0)
	if err := w.found(); err != nil {
		return err
	}
	w.at(bad)
	w.slot(asm.R0, fibSel)
	w.emit(asm.Add.Imm(asm.R0, 1))
	w.put(fibSel, asm.R0)
	w.next(fibNh)
	w.at(noMore)
	w.nextAlias()
	return nil
}

// nexthopObject tries nexthop sel of the nexthop object fi->nh
// (nexthop_get_nhc_lookup: the object itself, or entry sel of a group);
// when none is good the lookup backtracks ("goto miss").
func (w *fibWalk) nexthopObject() error {
	l := w.l
	group := w.label("fib_nho_group")
	check := w.label("fib_nho_check")
	bad := w.label("fib_nho_bad")
	miss := w.label("fib_nho_miss")
	w.member(fibFI, l.fiNh, 8)
	w.put(fibTmp2, asm.R0)
	w.read(asm.R0, l.nhIsGroup, 1)
	w.emit(asm.JNE.Imm(asm.R0, 0, group))
	w.slot(asm.R0, fibSel)
	w.emit(asm.JNE.Imm(asm.R0, 0, miss))
	w.member(fibTmp2, l.nhInfo, 8)
	w.emit(asm.Add.Imm(asm.R0, l.niNhc))
	w.put(fibTmp, asm.R0)
	w.emit(asm.Ja.Label(check))
	w.at(group)
	w.member(fibTmp2, l.nhGrp, 8)
	w.put(fibTmp2, asm.R0)
	w.read(asm.R0, l.ngNum, 2)
	w.slot(asm.R1, fibSel)
	w.emit(asm.JGE.Reg(asm.R1, asm.R0, miss))
	w.slot(asm.R3, fibTmp2)
	w.emit(
		asm.Mul.Imm(asm.R1, l.ngeSize),
		asm.Add.Reg(asm.R3, asm.R1),
	)
	w.read(asm.R3, l.ngEntries+l.ngeNh, 8)
	w.read(asm.R0, l.nhInfo, 8)
	w.emit(asm.Add.Imm(asm.R0, l.niNhc))
	w.put(fibTmp, asm.R0)
	w.at(check)
	if err := w.goodNexthop(bad); err != nil {
		return err
	}
	// nexthop_fib_nhc(fi->nh, 0): a group's first entry.
	if w.f.FIB&(ir.FIBIif|ir.FIBOif) != 0 {
		single := w.label("fib_nho_single")
		w.member(fibFI, l.fiNh, 8)
		w.put(fibTmp2, asm.R0)
		w.read(asm.R0, l.nhIsGroup, 1)
		w.emit(asm.JEq.Imm(asm.R0, 0, single))
		w.member(fibTmp2, l.nhGrp, 8)
		w.read(asm.R0, l.ngEntries+l.ngeNh, 8)
		w.put(fibTmp2, asm.R0)
		w.at(single)
		w.member(fibTmp2, l.nhInfo, 8)
		w.emit(asm.Add.Imm(asm.R0, l.niNhc))
		w.put(fibTmp2, asm.R0)
	}
	if err := w.found(); err != nil {
		return err
	}
	w.at(bad)
	w.slot(asm.R0, fibSel)
	w.emit(asm.Add.Imm(asm.R0, 1))
	w.put(fibSel, asm.R0)
	w.next(fibNhObj)
	w.at(miss)
	w.next(fibBack)
	return nil
}
