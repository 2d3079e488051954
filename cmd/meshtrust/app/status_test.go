package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Contexts whose export folders would be one are refused before any cluster
// is read or any file written.
func TestStatusExportRefusesCollidingContexts(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := unreachableKubeconfig(t, dir, "a/b", "a:b")
	export := filepath.Join(dir, "export")
	code, stdout, stderr := run(t, map[string]string{"KUBECONFIG": kubeconfig}, "status", "--context", "a/b", "--context", "a:b", "--export", export)
	want := `meshtrust: invalid --export: contexts "a/b" and "a:b" would both export to the folder a_b`
	if code != 2 || !strings.HasPrefix(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line starting %q", code, stdout, stderr, want)
	}
	if _, err := os.Stat(export); !os.IsNotExist(err) {
		t.Errorf("export folder created (%v)", err)
	}
}
