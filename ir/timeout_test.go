package ir

import (
	"strings"
	"testing"
)

func TestFormatMillis(t *testing.T) {
	for _, tc := range []struct {
		ms   uint64
		want string
	}{
		{0, "0s"}, {1, "1ms"}, {1000, "1s"}, {1540, "1s540ms"}, {90000, "1m30s"},
		{3723000, "1h2m3s"}, {86400000, "1d"}, {86399964, "23h59m59s964ms"}, {90061001, "1d1h1m1s1ms"},
	} {
		if got := FormatMillis(tc.ms); got != tc.want {
			t.Errorf("FormatMillis(%d) = %q, want %q", tc.ms, got, tc.want)
		}
	}
}

// TestPrintTimeouts prints sets with timeouts as nft 1.0.6 lists them
// (the expected text is nft's listing of the same sets).
func TestPrintTimeouts(t *testing.T) {
	port := func(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }
	addr := func(d byte) []byte { return []byte{192, 0, 2, d} }
	tab := &Table{Family: FamilyIPv4, Name: "t", Sets: []*Set{
		{Name: "a", Flags: SetTimeout, KeyType: 7, KeyLen: 4, Elements: []SetElement{
			{Low: addr(1), High: addr(1), Timeout: 90000, Expires: 89964},
			{Low: addr(2), High: addr(2)},
			{Low: addr(3), High: addr(3), Timeout: 3723000, Expires: 3722964},
		}},
		{Name: "b", Flags: SetTimeout, KeyType: 13, KeyLen: 2, Size: 100, Timeout: 86400000, Elements: []SetElement{
			{Low: port(22), High: port(22), Expires: 86399964},
			{Low: port(80), High: port(80), Timeout: 2000, Expires: 1964},
		}},
	}}
	var b strings.Builder
	if err := tab.PrintSets(&b, func(*Set) bool { return true }); err != nil {
		t.Fatal(err)
	}
	want := `table ip t {
	set a {
		type ipv4_addr
		flags timeout
		elements = { 192.0.2.1 timeout 1m30s expires 1m29s964ms, 192.0.2.2,
			     192.0.2.3 timeout 1h2m3s expires 1h2m2s964ms }
	}
	set b {
		type inet_service
		size 100
		timeout 1d
		elements = { 22 expires 23h59m59s964ms, 80 timeout 2s expires 1s964ms }
	}
}
`
	if b.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", b.String(), want)
	}
}
