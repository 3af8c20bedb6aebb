// Package state keeps bpfilter-nft's persistent state on a BPF filesystem:
// one directory per network namespace holding the pinned links, programs and
// maps of the loaded ruleset, and the ruleset itself with its bookkeeping as
// a JSON manifest stored in a pinned, frozen BPF array map.
//
// Layout under the root directory (DefaultRoot unless configured):
//
//	<root>/netns-<inode>/      one directory per network namespace
//	    state                  manifest of the running ruleset (blob map)
//	    next                   manifest of a load in progress; present after
//	                           a crash in the middle of a load
//	    counters-<gen>         the per-CPU counter map shared by all programs
//	    prog-<gen>-<id>        the program of one attach point
//	    link-<id>              the link of one attach point (kept across loads)
//	    array-<id>             netfilter dispatcher program array
//	    tmp-*                  objects being written; removed by the next load
//
// Names never contain dots: bpffs reserves them. Everything new is pinned
// under a tmp- name and renamed into place, so that a reader sees either
// the old or the new object, never a half-written one.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

// DefaultRoot is where state lives unless configured otherwise.
const DefaultRoot = "/sys/fs/bpf/bpfilter-nft"

// DefaultMountPoint is where a missing bpffs is mounted, as bpftool does.
const DefaultMountPoint = "/sys/fs/bpf"

// Names of the fixed entries of a namespace directory.
const (
	StateName = "state"
	NextName  = "next"
	// TempPrefix starts the names of objects being written.
	TempPrefix = "tmp-"
)

// Options configure where state lives.
type Options struct {
	// Root is the state directory; DefaultRoot if empty. It must lie on a
	// bpffs; a bpffs missing at DefaultMountPoint is mounted when the
	// process runs in the host's mount namespace and Root lies below it.
	Root string

	// Test hooks: the mount namespace and root directory of the host
	// (default /proc/1/ns/mnt, /proc/1/root) and the bpffs mount point.
	initMountNS string
	initRoot    string
	mountPoint  string
}

// Dir is the state directory of one network namespace.
type Dir struct {
	path  string
	netns uint64
	root  string
}

// Open returns the state directory of network namespace ns (nil: the
// calling thread's), creating it when missing. It finds or mounts the
// bpffs as described at Options.Root. Under a private mount namespace
// without bpffs (as `ip netns exec` sets up: it mounts a fresh /sys), it
// uses the host's bpffs through /proc/1/root so that the pins outlive the
// process, or refuses when that is not reachable: a ruleset pinned on a
// bpffs that dies with the command would silently vanish.
func Open(ns *nsctx.NetNS, opts Options) (*Dir, error) {
	var ino uint64
	if ns == nil {
		cur, err := nsctx.Current()
		if err != nil {
			return nil, err
		}
		ino = cur.Inode()
		cur.Close()
	} else {
		ino = ns.Inode()
	}
	root, err := resolveRoot(opts)
	if err != nil {
		return nil, err
	}
	d := &Dir{path: filepath.Join(root, fmt.Sprintf("netns-%d", ino)), netns: ino, root: root}
	if err := os.MkdirAll(d.path, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return d, nil
}

func (o *Options) defaults() {
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.initMountNS == "" {
		o.initMountNS = "/proc/1/ns/mnt"
	}
	if o.initRoot == "" {
		o.initRoot = "/proc/1/root"
	}
	if o.mountPoint == "" {
		o.mountPoint = DefaultMountPoint
	}
}

// resolveRoot returns the path under which the state root is reached on a
// bpffs that outlives the process.
func resolveRoot(opts Options) (string, error) {
	opts.defaults()
	root := filepath.Clean(opts.Root)
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("state root %q is not an absolute path", opts.Root)
	}
	onBPF, anc, err := onBPFFS(root)
	if err != nil {
		return "", err
	}
	if onBPF {
		return root, nil
	}
	private, err := privateMountNS(opts.initMountNS)
	if err != nil {
		return "", fmt.Errorf("state root %s: %s is not a bpf filesystem, and whether this process shares the host's mount namespace is unknown (%v); mount bpffs (mount -t bpf bpf %s) and retry", root, anc, err, opts.mountPoint)
	}
	if private {
		host := filepath.Join(opts.initRoot, root)
		if ok, _, err := onBPFFS(host); err == nil && ok {
			return host, nil
		}
		return "", fmt.Errorf("state root %s: this process runs in a private mount namespace (as under `ip netns exec`) where %s is not a bpf filesystem, and the host's %s is not on one either: pins made here would vanish when the command exits, taking the ruleset with them; mount bpffs on the host (mount -t bpf bpf %s) or run outside `ip netns exec` with --netns", root, anc, host, opts.mountPoint)
	}
	mp := filepath.Clean(opts.mountPoint)
	if root != mp && !strings.HasPrefix(root, mp+"/") {
		return "", fmt.Errorf("state root %s: %s is not a bpf filesystem", root, anc)
	}
	if err := unix.Mount("bpf", mp, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("state root %s: mounting bpffs at %s: %w", root, mp, err)
	}
	if ok, anc, err := onBPFFS(root); err != nil || !ok {
		return "", fmt.Errorf("state root %s: %s is still not a bpf filesystem after mounting one at %s (%v)", root, anc, mp, err)
	}
	return root, nil
}

// onBPFFS reports whether path, or its nearest existing ancestor (returned),
// is on a bpffs.
func onBPFFS(path string) (bool, string, error) {
	p := path
	for {
		var fs unix.Statfs_t
		err := unix.Statfs(p, &fs)
		if err == nil {
			return fs.Type == unix.BPF_FS_MAGIC, p, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return false, p, fmt.Errorf("statfs %s: %w", p, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return false, p, fmt.Errorf("statfs %s: %w", p, err)
		}
		p = parent
	}
}

// privateMountNS reports whether the process's mount namespace differs
// from the one at initNS.
func privateMountNS(initNS string) (bool, error) {
	var self, init unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &self); err != nil {
		return false, fmt.Errorf("stat /proc/self/ns/mnt: %w", err)
	}
	if err := unix.Stat(initNS, &init); err != nil {
		return false, fmt.Errorf("stat %s: %w", initNS, err)
	}
	return self.Ino != init.Ino || self.Dev != init.Dev, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Root returns the state root the directory lies in, as reached from this
// process.
func (d *Dir) Root() string { return d.root }

// NetNS returns the inode of the directory's network namespace.
func (d *Dir) NetNS() uint64 { return d.netns }

// PinPath returns the path of the entry called name.
func (d *Dir) PinPath(name string) string { return filepath.Join(d.path, name) }

// Lock takes an exclusive flock on the directory, serialising writers
// across processes; call the returned function to release it. A writer
// that reads the stored ruleset to compute a change holds the lock from
// the read to the end of the change. The directory is created if a
// concurrent Flush removed it, and the lock is taken again if the
// directory was removed or replaced while Lock waited: the returned lock
// always covers the directory at Path.
func (d *Dir) Lock() (func(), error) {
	for {
		if err := os.MkdirAll(d.path, 0o700); err != nil {
			return nil, fmt.Errorf("lock state: %w", err)
		}
		f, err := os.Open(d.path)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed between MkdirAll and Open
		}
		if err != nil {
			return nil, fmt.Errorf("lock state: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock state %s: %w", d.path, err)
		}
		var locked, now unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &locked); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock state %s: %w", d.path, err)
		}
		err = unix.Stat(d.path, &now)
		if err == nil && now.Dev == locked.Dev && now.Ino == locked.Ino {
			return func() { f.Close() }, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("lock state %s: %w", d.path, err)
		}
	}
}

// Pinner is an object that can be pinned: a program, map or link.
type Pinner interface {
	Pin(string) error
}

// Pin pins obj as name, replacing an existing entry atomically: it is
// pinned under a temporary name and renamed into place.
func (d *Dir) Pin(name string, obj Pinner) error {
	if err := checkName(name); err != nil {
		return err
	}
	tmp := d.PinPath(TempPrefix + name)
	os.Remove(tmp)
	if err := obj.Pin(tmp); err != nil {
		return fmt.Errorf("pin %s: %w", name, err)
	}
	if err := os.Rename(tmp, d.PinPath(name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pin %s: %w", name, err)
	}
	return nil
}

// Rename renames entry from to to, replacing to atomically.
func (d *Dir) Rename(from, to string) error {
	if err := checkName(to); err != nil {
		return err
	}
	if err := os.Rename(d.PinPath(from), d.PinPath(to)); err != nil {
		return fmt.Errorf("rename %s: %w", from, err)
	}
	return nil
}

// Exists reports whether entry name exists.
func (d *Dir) Exists(name string) bool {
	_, err := os.Lstat(d.PinPath(name))
	return err == nil
}

// Remove unpins entry name; a missing entry is no error.
func (d *Dir) Remove(name string) error {
	if err := os.Remove(d.PinPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", name, err)
	}
	return nil
}

// Entries lists the directory's entry names.
func (d *Dir) Entries() ([]string, error) {
	des, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	names := make([]string, len(des))
	for i, de := range des {
		names[i] = de.Name()
	}
	return names, nil
}

// Delete removes the (emptied) directory itself.
func (d *Dir) Delete() error {
	if err := os.Remove(d.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state directory: %w", err)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "./") {
		return fmt.Errorf("invalid state entry name %q (bpffs names hold no dots or slashes)", name)
	}
	return nil
}

// Blob storage: a BPF_MAP_TYPE_ARRAY of blobChunk-byte values; value 0
// starts with blobMagic and the blob's length (little endian u64), the
// blob's bytes follow across the values. The map is frozen once written.
const (
	blobChunk  = 4096
	blobHeader = 16
)

var blobMagic = [8]byte{'b', 'p', 'f', 'n', 'f', 't', 'B', '1'}

// WriteBlob stores data as entry name, replacing it atomically.
func (d *Dir) WriteBlob(name string, data []byte) error {
	buf := make([]byte, blobHeader+len(data))
	copy(buf, blobMagic[:])
	binary.LittleEndian.PutUint64(buf[8:], uint64(len(data)))
	copy(buf[blobHeader:], data)
	n := (len(buf) + blobChunk - 1) / blobChunk
	buf = append(buf, make([]byte, n*blobChunk-len(buf))...)
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "bpfnft_blob",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  blobChunk,
		MaxEntries: uint32(n),
		Flags:      unix.BPF_F_RDONLY_PROG,
	})
	if err != nil {
		return fmt.Errorf("write %s: create map: %w", name, err)
	}
	defer m.Close()
	for i := 0; i < n; i++ {
		if err := m.Update(uint32(i), buf[i*blobChunk:(i+1)*blobChunk], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write %s: chunk %d: %w", name, i, err)
		}
	}
	if err := m.Freeze(); err != nil {
		return fmt.Errorf("write %s: freeze: %w", name, err)
	}
	return d.Pin(name, m)
}

// ReadBlob reads entry name written by WriteBlob. A missing entry yields an
// error matching os.ErrNotExist.
func (d *Dir) ReadBlob(name string) ([]byte, error) {
	m, err := ebpf.LoadPinnedMap(d.PinPath(name), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer m.Close()
	if m.Type() != ebpf.Array || m.KeySize() != 4 || m.ValueSize() != blobChunk {
		return nil, fmt.Errorf("read %s: not a state blob (map type %s, value size %d)", name, m.Type(), m.ValueSize())
	}
	var out []byte
	chunk := make([]byte, blobChunk)
	for i := uint32(0); i < m.MaxEntries(); i++ {
		if err := m.Lookup(i, &chunk); err != nil {
			return nil, fmt.Errorf("read %s: chunk %d: %w", name, i, err)
		}
		out = append(out, chunk...)
	}
	if len(out) < blobHeader || [8]byte(out[:8]) != blobMagic {
		return nil, fmt.Errorf("read %s: bad blob header", name)
	}
	size := binary.LittleEndian.Uint64(out[8:16])
	if size > uint64(len(out)-blobHeader) {
		return nil, fmt.Errorf("read %s: blob length %d exceeds its map (%d bytes)", name, size, len(out)-blobHeader)
	}
	return out[blobHeader : blobHeader+int(size)], nil
}

// WriteManifest stores m as entry name (StateName or NextName).
func (d *Dir) WriteManifest(name string, m *Manifest) error {
	m.Version = ManifestVersion
	m.NetNS = d.netns
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return d.WriteBlob(name, b)
}

// ReadManifest reads the manifest stored as name. A missing entry yields an
// error matching os.ErrNotExist.
func (d *Dir) ReadManifest(name string) (*Manifest, error) {
	b, err := d.ReadBlob(name)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest %s: %w", name, err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("manifest %s has version %d; this binary reads version %d", name, m.Version, ManifestVersion)
	}
	return &m, nil
}
