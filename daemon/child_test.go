package daemon

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/daemon/client"
)

// The test binary doubles as a client run inside other namespaces (made
// with unshare): with childEnv set, TestMain runs the child instead of the
// tests.
const childEnv = "BPFNFT_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "interactive":
		os.Exit(childInteractive())
	case "once":
		// Load a one-table ruleset and report.
		fmt.Println(childApply(client.SocketPath(""), nil, 0))
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

// udpDropRule is "udp dport PORT counter drop".
func udpDropRule(tab *nftables.Table, ch *nftables.Chain, port uint16) *nftables.Rule {
	p := make([]byte, 2)
	binary.BigEndian.PutUint16(p, port)
	return &nftables.Rule{Table: tab, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}}
}

// loadPortRuleset replaces table ip NAME in conn's namespace with an input
// chain dropping UDP to port (no chain when port is 0).
func loadPortRuleset(conn *nftables.Conn, name string, port uint16) error {
	return loadPortRulesetAt(conn, name, port, 0)
}

// loadPortRulesetAt is loadPortRuleset with the chain at priority prio.
// (Two BPF netfilter links at one hook cannot share a priority: the kernel
// refuses the second with EBUSY, so chains of different tables in one
// namespace need different priorities.)
func loadPortRulesetAt(conn *nftables.Conn, name string, port uint16, prio int32) error {
	tab := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: name}
	conn.AddTable(tab)
	conn.DelTable(tab)
	conn.AddTable(tab)
	if port != 0 {
		policy := nftables.ChainPolicyAccept
		ch := conn.AddChain(&nftables.Chain{Name: "input", Table: tab, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio)), Policy: &policy})
		conn.AddRule(udpDropRule(tab, ch, port))
	}
	return conn.Flush()
}

// result renders an error as the children report it.
func result(err error) string {
	if err == nil {
		return "ok"
	}
	var oe *netlink.OpError
	var en unix.Errno
	if errors.As(err, &en) {
		msg := ""
		if errors.As(err, &oe) {
			msg = oe.Message
		}
		return fmt.Sprintf("err %d %s", int(en), msg)
	}
	return "err 0 " + strings.ReplaceAll(err.Error(), "\n", " ")
}

func childApply(path string, opts []client.Option, port uint16) string {
	conn, closer, err := client.Nftables(path, opts...)
	if err != nil {
		return result(err)
	}
	defer closer.Close()
	return result(loadPortRuleset(conn, "filter", port))
}

// childInteractive serves commands from the parent, one per line:
//
//	apply PORT        load "udp dport PORT drop" in its own namespace
//	list              list the objects it sees (JSON)
//	namespaces        ask for the namespace tree
//	flush FD          flush the ruleset of the network namespace of the
//	                  inherited descriptor FD
//	edit FD           add a table to that network namespace
func childInteractive() int {
	fmt.Println("ready")
	inherited := map[int]*os.File{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "apply":
			p, _ := strconv.Atoi(f[1])
			fmt.Println(childApply(client.SocketPath(""), nil, uint16(p)))
		case "list", "namespaces":
			c, err := client.Dial(client.SocketPath(""))
			if err != nil {
				fmt.Println(result(err))
				continue
			}
			var v any
			if f[0] == "list" {
				err = client.ListObjects(c, &v)
			} else {
				err = client.ListNamespaces(c, &v)
			}
			c.Close()
			if err != nil {
				fmt.Println(result(err))
				continue
			}
			b, _ := json.Marshal(v)
			fmt.Println(string(b))
		case "flush", "edit":
			// The namespace file was inherited as descriptor f[1].
			fd, _ := strconv.Atoi(f[1])
			nsf := inherited[fd]
			if nsf == nil {
				nsf = os.NewFile(uintptr(fd), "netns")
				inherited[fd] = nsf
			}
			conn, closer, err := client.Nftables(client.SocketPath(""), client.WithNetNS(nsf))
			if err != nil {
				fmt.Println(result(err))
				continue
			}
			if f[0] == "flush" {
				conn.FlushRuleset()
			} else {
				conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "intruder"})
			}
			fmt.Println(result(conn.Flush()))
			closer.Close()
		case "exit":
			return 0
		}
	}
	return 0
}

// child is a client process in a user+network namespace of its own.
type child struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Scanner
}

// startChild runs the test binary as an interactive client under
// `unshare -Urn` (unprivileged user and network namespaces).
// Files in extra are inherited as descriptors 3, 4, ….
func startChild(t *testing.T, sock string, extra ...*os.File) *child {
	t.Helper()
	return startNestedChild(t, sock, 1, extra...)
}

// startNestedChild is startChild depth user+network namespaces deep.
func startNestedChild(t *testing.T, sock string, depth int, extra ...*os.File) *child {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("privileged: unshare not installed")
	}
	var args []string
	for i := 0; i < depth; i++ {
		args = append(args, "unshare", "-Urn")
	}
	cmd := exec.Command(args[0], append(args[1:], os.Args[0])...)
	cmd.Env = append(os.Environ(), childEnv+"=interactive", client.SocketEnv+"="+sock)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	c := &child{cmd: cmd, in: pw, out: bufio.NewScanner(out)}
	c.out.Buffer(make([]byte, 1<<20), 1<<20)
	t.Cleanup(func() {
		pw.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	if got := c.line(t); got != "ready" {
		t.Fatalf("child: %q, want ready", got)
	}
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("child ended: %v", c.out.Err())
	}
	return c.out.Text()
}

// do sends a command and returns the child's answer.
func (c *child) do(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		t.Fatal(err)
	}
	return c.line(t)
}

func (c *child) pid() int { return c.cmd.Process.Pid }
