package nfttest

import (
	"os"
	"path/filepath"
	"testing"
)

// Golden returns the content of the golden file path for a test to compare
// with got, after writing got to it when update is set (a test's -update
// flag): regenerating goldens is then one command. A missing file fails the
// test with that hint.
func Golden(t testing.TB, path, got string, update bool) string {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	return string(want)
}
