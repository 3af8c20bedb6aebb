package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfilter-nft/bpfilter-nft/internal/bpffstest"
	"github.com/bpfilter-nft/bpfilter-nft/internal/privtest"
	"github.com/bpfilter-nft/bpfilter-nft/nsctx"
)

func openTest(t *testing.T) *Dir {
	t.Helper()
	privtest.Require(t)
	root := filepath.Join(bpffstest.Mount(t), "bpfilter-nft")
	d, err := Open(nil, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOpenLayout(t *testing.T) {
	d := openTest(t)
	cur, err := nsctx.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if want := fmt.Sprintf("netns-%d", cur.Inode()); filepath.Base(d.Path()) != want {
		t.Errorf("directory %s, want .../%s", d.Path(), want)
	}
	if d.NetNS() != cur.Inode() {
		t.Errorf("NetNS() = %d, want %d", d.NetNS(), cur.Inode())
	}
	if fi, err := os.Stat(d.Path()); err != nil || !fi.IsDir() {
		t.Fatalf("state directory missing: %v", err)
	}
	// Opening again finds the same directory.
	d2, err := Open(nil, Options{Root: d.Root()})
	if err != nil || d2.Path() != d.Path() {
		t.Errorf("second Open: %v, %v", d2, err)
	}
}

func TestBlobRoundTrip(t *testing.T) {
	d := openTest(t)
	for _, n := range []int{0, 1, blobChunk - blobHeader, blobChunk - blobHeader + 1, 3*blobChunk + 5} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i*7 + n)
			}
			if err := d.WriteBlob("blob", data); err != nil {
				t.Fatal(err)
			}
			got, err := d.ReadBlob("blob")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes, differing from the %d written", len(got), len(data))
			}
		})
	}
	// The stored map is frozen: nobody rewrites a blob in place.
	m, err := ebpf.LoadPinnedMap(d.PinPath("blob"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Update(uint32(0), make([]byte, blobChunk), ebpf.UpdateAny); err == nil {
		t.Error("a stored blob can be overwritten")
	}
	if _, err := d.ReadBlob("missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadBlob(missing) = %v, want ErrNotExist", err)
	}
	if d.Exists(TempPrefix + "blob") {
		t.Error("temporary entry left behind")
	}
}

func TestReadBlobRejectsOtherMaps(t *testing.T) {
	d := openTest(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := d.Pin("other", m); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadBlob("other"); err == nil || !strings.Contains(err.Error(), "not a state blob") {
		t.Errorf("ReadBlob of a foreign map: %v", err)
	}
	// A blob-shaped map without the header is refused too.
	m2, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: blobChunk, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := d.Pin("headless", m2); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadBlob("headless"); err == nil || !strings.Contains(err.Error(), "header") {
		t.Errorf("ReadBlob of a headerless map: %v", err)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	d := openTest(t)
	m := &Manifest{
		Generation: 7,
		Ruleset:    "table ip t {\n}\n",
		Rules:      []Rule{{Family: "ip", Table: "t", Chain: "c", Handle: 2, Text: "counter drop", Slots: []uint32{3}}},
		Points: []Point{{Key: "netfilter/ip/input/0/ip/t/c", Kind: "netfilter", Family: "ip", Table: "t", Chain: "c",
			Hook: "input", Link: "link-x", Program: "prog-7-x", Array: "array-x"}},
		Counters: Counters{Map: "counters-7", Capacity: 64, Slots: map[string]uint32{"id": 3}},
	}
	if err := d.WriteManifest(StateName, m); err != nil {
		t.Fatal(err)
	}
	got, err := d.ReadManifest(StateName)
	if err != nil {
		t.Fatal(err)
	}
	if got.NetNS != d.NetNS() || got.Version != ManifestVersion {
		t.Errorf("netns %d version %d, want %d %d", got.NetNS, got.Version, d.NetNS(), ManifestVersion)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("manifest changed in the round trip:\n got %+v\nwant %+v", got, m)
	}
	// A manifest of a future format is refused, not misread.
	if err := d.WriteBlob(NextName, []byte(`{"version":99}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadManifest(NextName); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("future manifest: %v", err)
	}
}

func TestPinReplacesAndNames(t *testing.T) {
	d := openTest(t)
	newMap := func() *ebpf.Map {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := newMap(), newMap()
	if err := d.Pin("m", a); err != nil {
		t.Fatal(err)
	}
	if err := d.Pin("m", b); err != nil {
		t.Fatalf("replacing pin: %v", err)
	}
	got, err := ebpf.LoadPinnedMap(d.PinPath("m"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	gi, _ := got.Info()
	bi, _ := b.Info()
	gid, _ := gi.ID()
	bid, _ := bi.ID()
	if gid != bid {
		t.Errorf("pin holds map %d, want the replacement %d", gid, bid)
	}
	for _, bad := range []string{"", "a.b", "a/b"} {
		if err := d.Pin(bad, a); err == nil {
			t.Errorf("Pin(%q) succeeded", bad)
		}
	}
	names, err := d.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{"m"}) {
		t.Errorf("entries %v, want [m]", names)
	}
	if err := d.Remove("m"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("m"); err != nil {
		t.Errorf("removing a missing entry: %v", err)
	}
	if err := d.Delete(); err != nil {
		t.Fatal(err)
	}
}

func TestLockExcludes(t *testing.T) {
	d := openTest(t)
	unlock, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("second lock while held: %v, want EWOULDBLOCK", err)
	}
	unlock()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("lock after release: %v", err)
	}
}

func TestOpenRefusesNonBPFFS(t *testing.T) {
	privtest.Require(t)
	plain := bpffstest.Dir(t)
	for _, root := range []string{"relative/dir", filepath.Join(plain, "state")} {
		// The mount point is elsewhere: nothing may be mounted here.
		_, err := Open(nil, Options{Root: root, initMountNS: "/proc/self/ns/mnt", mountPoint: filepath.Join(plain, "elsewhere")})
		if err == nil {
			t.Errorf("Open(%s) succeeded", root)
		}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(plain, &fs); err != nil || fs.Type == unix.BPF_FS_MAGIC {
		t.Errorf("%s became a bpffs (%v)", plain, err)
	}
}

// TestOpenMountsMissingBPFFS: in the host's mount namespace, a missing
// bpffs is mounted at the mount point, as bpftool does.
func TestOpenMountsMissingBPFFS(t *testing.T) {
	privtest.Require(t)
	mp := bpffstest.Dir(t)
	d, err := Open(nil, Options{Root: filepath.Join(mp, "bpfilter-nft"), initMountNS: "/proc/self/ns/mnt", mountPoint: mp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mp, unix.MNT_DETACH) })
	var fs unix.Statfs_t
	if err := unix.Statfs(mp, &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("%s is not a bpffs after Open (%v)", mp, err)
	}
	if err := d.WriteBlob("x", []byte("y")); err != nil {
		t.Error(err)
	}
}

const childEnv = "BPFNFT_STATE_CHILD"

// TestOpenPrivateMountNS runs Open in a child process in a private mount
// namespace whose view of the root directory is a tmpfs, as `ip netns
// exec` gives a command a private /sys without bpffs. Where the host (here:
// the test process) has a bpffs there, the child must pin through the
// host's root so that the pins outlive it; where it has none, Open must
// refuse.
func TestOpenPrivateMountNS(t *testing.T) {
	privtest.Require(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("privileged: unshare(1) not installed")
	}
	for _, hostBPFFS := range []bool{true, false} {
		t.Run(fmt.Sprintf("host-bpffs=%v", hostBPFFS), func(t *testing.T) {
			var dir string
			if hostBPFFS {
				dir = bpffstest.Mount(t)
			} else {
				dir = bpffstest.Dir(t)
			}
			root := filepath.Join(dir, "bpfilter-nft")
			cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
				"sh", "-c", `mount -t tmpfs bpfnft-private "$1" && exec "$2" -test.run='^TestOpenChild$' -test.v`, "sh", dir, os.Args[0])
			cmd.Env = append(os.Environ(), childEnv+"=1", "BPFNFT_STATE_ROOT="+root, "BPFNFT_STATE_HOST="+strconv.Itoa(os.Getpid()))
			out, err := cmd.CombinedOutput()
			if hostBPFFS {
				if err != nil {
					t.Fatalf("child: %v\n%s", err, out)
				}
				// The child's pin lives in the host's bpffs.
				cur, _ := nsctx.Current()
				defer cur.Close()
				got, err := (&Dir{path: filepath.Join(root, fmt.Sprintf("netns-%d", cur.Inode()))}).ReadBlob("child")
				if err != nil || string(got) != "written in a private mount namespace" {
					t.Errorf("child's blob in the host bpffs: %q, %v\n%s", got, err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("child succeeded without a host bpffs:\n%s", out)
			}
			if !strings.Contains(string(out), "private mount namespace") || !strings.Contains(string(out), "vanish") {
				t.Errorf("refusal does not explain itself:\n%s", out)
			}
		})
	}
}

// TestOpenChild is the child of TestOpenPrivateMountNS.
func TestOpenChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper process of TestOpenPrivateMountNS")
	}
	host := os.Getenv("BPFNFT_STATE_HOST")
	d, err := Open(nil, Options{
		Root:        os.Getenv("BPFNFT_STATE_ROOT"),
		initMountNS: "/proc/" + host + "/ns/mnt",
		initRoot:    "/proc/" + host + "/root",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Path(), "/proc/"+host+"/root/") {
		t.Errorf("state at %s, not through the host's root", d.Path())
	}
	if err := d.WriteBlob("child", []byte("written in a private mount namespace")); err != nil {
		t.Fatal(err)
	}
}
