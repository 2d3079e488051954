package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Contexts whose export folders would be one are refused before any cluster
// is read or any file written.
func TestStatusExportRefusesCollidingContexts(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://" + closedPort(t)}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "kube-token"}
	kc.Contexts["a/b"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.Contexts["a:b"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
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
