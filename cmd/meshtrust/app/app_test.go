package app

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// run executes the CLI in-process with only the given environment.
func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = Main(ctx, args, Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, WithGetenv(getenv),
		WithNow(func() time.Time { return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) }))
	return code, out.String(), errOut.String()
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

const secretToken = "hvs.THIS-TOKEN-MUST-NEVER-BE-PRINTED"

func TestVaultUnreachableIsOneLineAndHidesToken(t *testing.T) {
	addr := "http://" + closedPort(t)
	env := map[string]string{"VAULT_ADDR": addr, "VAULT_TOKEN": secretToken}
	for _, args := range [][]string{
		{"vault", "bootstrap"},
		{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--auth", "approle"},
		{"vault", "unenroll", "--cluster", "east"},
		{"vault", "retire-root", "--issuer-name", "meshtrust-root"},
		{"vault", "rotate-root", "--to", "meshtrust-root-2", "--context", "east"},
	} {
		code, stdout, stderr := run(t, env, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "vault at "+addr) || !strings.Contains(lines[0], "unreachable") {
			t.Errorf("%v: want one line naming %s and 'unreachable', got %q", args, addr, stderr)
		}
		if strings.Contains(stdout+stderr, secretToken) || strings.Contains(stdout+stderr, "goroutine") {
			t.Errorf("%v: output leaks the token or a stack trace: %q %q", args, stdout, stderr)
		}
	}
}

// unreachableKubeconfig writes, in dir, a kubeconfig whose contexts all
// point at a closed port; the first is the current one.
func unreachableKubeconfig(t *testing.T, dir string, contexts ...string) string {
	t.Helper()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://" + closedPort(t)}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "kube-token"}
	for _, name := range contexts {
		kc.Contexts[name] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	}
	kc.CurrentContext = contexts[0]
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

func TestBadInput(t *testing.T) {
	kubeconfig := unreachableKubeconfig(t, t.TempDir(), "east", "west")
	env := map[string]string{"VAULT_ADDR": "http://" + closedPort(t), "VAULT_TOKEN": secretToken, "KUBECONFIG": kubeconfig}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vault", "enroll", "--cluster", "east", "--trust-domain", "spiffe://east.mesh"}, `invalid trust domain "spiffe://east.mesh": has a scheme`},
		{[]string{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh,west.mesh"}, "names more than one domain"},
		{[]string{"vault", "enroll", "--cluster", "East", "--trust-domain", "east.mesh"}, `invalid cluster name "East"`},
		{[]string{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--context", "nope"}, `unknown kube context "nope"`},
		{[]string{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--renew-before", "800h"}, "--renew-before"},
		{[]string{"vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--auth", "ldap"}, `invalid --auth "ldap"`},
		{[]string{"vault", "bootstrap", "--ttl", "100h"}, "the root must outlive --max-intermediate-ttl"},
		{[]string{"vault", "bootstrap", "--key-type", "dsa"}, `invalid --key-type "dsa"`},
		{[]string{"vault", "bootstrap", "--url-base", "vault.example.com:8200"}, `invalid --url-base "vault.example.com:8200": want an http or https address`},
		{[]string{"status", "--context", "east", "--context", "nope"}, `unknown kube context "nope" in KUBECONFIG=` + kubeconfig + " (known: east, west)"},
		{[]string{"status", "-o", "xml"}, `invalid --output "xml"`},
		{[]string{"vault", "retire-root"}, `required flag(s) "issuer-name" not set`},
		{[]string{"vault", "retire-root", "--issuer-name", "default"}, `invalid --issuer-name "default"`},
		{[]string{"vault", "retire-root", "--issuer-name", "meshtrust-root", "--mount", "pki/"}, `invalid --mount "pki/"`},
	} {
		code, stdout, stderr := run(t, env, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line containing %q", tc.args, code, stderr, tc.want)
		}
		if strings.Contains(stdout+stderr, secretToken) {
			t.Errorf("%v leaks the token", tc.args)
		}
	}

	// An unreachable cluster is reported, not fatal to the others, and
	// gives a non-zero exit naming it.
	code, stdout, stderr := run(t, env, "status", "--context", "east")
	if code != 1 || !strings.Contains(stdout, "unreachable") || !strings.Contains(stderr, "UNHEALTHY: east") {
		t.Errorf("status of an unreachable cluster: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// Every command has examples in its help.
func TestHelpHasExamples(t *testing.T) {
	root := NewRootCommand(Streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		if c.Example == "" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func TestMain(m *testing.M) {
	// The tests pass their environment explicitly; make sure nothing falls
	// back to the developer's real Vault or clusters.
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "KUBECONFIG"} {
		os.Unsetenv(k)
	}
	os.Exit(m.Run())
}
