package privtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	t.Setenv(LogEnv, path)
	record("TestA")
	record("TestB/sub")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(b)); len(got) != 2 || got[0] != "TestA" || got[1] != "TestB/sub" {
		t.Errorf("log holds %q", got)
	}
}
