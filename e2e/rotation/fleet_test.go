package rotation

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	cliapp "github.com/meshtrust/meshtrust/cmd/meshtrust/app"
	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
)

// Equipment of TestRotateRoot: the meshtrust CLI as a separate process
// (this test binary re-executed), a TCP proxy in front of one cluster's
// API server that can go down, and handshakes between every pair of
// clusters by workloads that keep their certificates.

// cliEnv makes this test binary run `meshtrust` instead of the tests.
const cliEnv = "MESHTRUST_ROTATION_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		os.Exit(cliapp.Main(context.Background(), os.Args[1:],
			cliapp.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
	}
	os.Exit(m.Run())
}

// process is one `meshtrust` run in its own process.
type process struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	lines  chan string // standard error, line by line
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
}

// startCLI starts `meshtrust args...` with the Vault owner's environment
// and extra variables.
func (e *env) startCLI(kubeconfig string, extra []string, args ...string) *process {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append([]string{cliEnv + "=1", "VAULT_ADDR=" + e.lab.Vault.Addr, "VAULT_TOKEN=" + e.lab.Vault.RootToken,
		"HOME=" + e.lab.Dir, "KUBECONFIG=" + kubeconfig, "PATH=" + os.Getenv("PATH")}, extra...)
	p := &process{cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	cmd.Stdout = &p.stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	return p
}

// wait waits for the process and returns its exit code (-9 when SIGKILLed)
// and what it printed, standard error (progress) after standard output.
func (p *process) wait() (int, string) {
	<-p.done
	err := p.cmd.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.stdout.String() + p.stderr.String()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal()), out
		}
		return ee.ExitCode(), out
	}
	return 0, out
}

// proxy forwards TCP connections to target until it is stopped; started
// again, it listens on the same address.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start(t testing.TB) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("restarting the proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// stop closes the listener and every connection: the cluster is down for
// whoever reaches it through the proxy.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// kubeconfigVia writes a kubeconfig for every cluster, cluster via
// reached through addr instead of directly.
func (e *env) kubeconfigVia(via, addr string) string {
	e.t.Helper()
	configs := map[string]*rest.Config{}
	for _, c := range e.lab.Clusters {
		cfg := rest.CopyConfig(c.Config)
		if c.Name == via {
			cfg.Host = "https://" + addr
		}
		configs[c.Name] = cfg
	}
	path := filepath.Join(e.lab.Dir, "kubeconfig-rotate")
	if err := lab.WriteKubeconfig(path, configs, e.lab.Clusters[0].Name); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// holder is a workload that keeps its certificate until half its lifetime
// is gone, as the Istio agent renews it, so a certificate issued under the
// old root is still in use well after its istiod moved on.
type holder struct {
	cluster string
	agent   *istio.Agent
	id      *istio.Identity
	renewAt time.Time
}

// meshTraffic is the handshake loop between every ordered pair of clusters.
type meshTraffic struct {
	mu sync.Mutex
	tally
	// signers counts, per cluster, the handshakes made with a certificate
	// chaining to each root.
	signers map[string]map[string]int
	cancel  context.CancelFunc
	done    chan struct{}
}

func (e *env) startMeshTraffic(holders []*holder) *meshTraffic {
	ctx, cancel := context.WithCancel(e.ctx)
	tr := &meshTraffic{signers: map[string]map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go loop(ctx, tr.done, 100*time.Millisecond, func(ctx context.Context) { e.meshRound(ctx, tr, holders) })
	e.t.Cleanup(tr.stop)
	return tr
}

func (tr *meshTraffic) stop() {
	tr.cancel()
	<-tr.done
}

func (e *env) meshRound(ctx context.Context, tr *meshTraffic, holders []*holder) {
	trusts := map[string]*istio.ProxyTrust{}
	for _, h := range holders {
		if h.id == nil || time.Now().After(h.renewAt) {
			id, err := h.agent.Certificate(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				tr.record("", "", fmt.Errorf("%s: certificate request: %w", h.cluster, err))
				return
			}
			h.id, h.renewAt = id, time.Now().Add(id.Cert.Leaf.NotAfter.Sub(time.Now())/2)
		}
		pt, err := istio.PublishedTrust(ctx, e.lab.Cluster(h.cluster).Clientset, workloadNamespace)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			tr.record("", "", fmt.Errorf("%s: %w", h.cluster, err))
			return
		}
		trusts[h.cluster] = pt
	}
	for _, from := range holders {
		for _, to := range holders {
			if from == to {
				continue
			}
			err := call(ctx, from.id.Cert, workloadOf(from.cluster), trusts[from.cluster], to.id.Cert, workloadOf(to.cluster), trusts[to.cluster])
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				err = fmt.Errorf("%s (certificate under %s) -> %s (under %s): %w", from.cluster, e.heldRoot(from), to.cluster, e.heldRoot(to), err)
			}
			tr.record(from.cluster, e.heldRoot(from), err)
		}
	}
}

// heldRoot names the root the holder's certificate chains to.
func (e *env) heldRoot(h *holder) string {
	if n := len(h.id.Intermediates); n > 0 {
		return e.name(h.id.Intermediates[n-1])
	}
	return "?"
}

func (tr *meshTraffic) record(cluster, root string, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.add(err) {
		return
	}
	if tr.signers[cluster] == nil {
		tr.signers[cluster] = map[string]int{}
	}
	tr.signers[cluster][root]++
}

func (tr *meshTraffic) counts() (ok, failed int, failures []string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok, tr.failed, append([]string(nil), tr.failures...)
}

// waitMore waits until n more handshakes succeeded.
func (e *env) waitMore(tr *meshTraffic, n int, what string) {
	e.t.Helper()
	base, _, _ := tr.counts()
	err := lab.WaitFor(e.ctx, waitLimit, func(context.Context) error {
		ok, failed, failures := tr.counts()
		if ok-base < n {
			return fmt.Errorf("%d of %d handshakes (%d failed overall: %v)", ok-base, n, failed, failures)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("handshakes %s: %v", what, err)
	}
}

// rootNames names the certificates of a PEM bundle.
func (e *env) rootNames(pemBytes []byte) []string {
	certs, err := pki.DecodeCertificates(pemBytes, pki.MaxRootBundlePEMSize)
	if err != nil {
		return []string{"unreadable"}
	}
	return e.names(certs)
}
