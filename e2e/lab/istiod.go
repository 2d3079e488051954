package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/e2e/istio"
)

// Istiod is a real istiod (pilot-discovery) process for one cluster,
// started as the istio-discovery chart starts it in a pod: the cluster's
// kubeconfig, the mesh config and cacerts mounted from the cluster by
// projectors (kubelet's part), every listener on 127.0.0.1.
//
// How it differs from a pod: it authenticates to the API server as the
// lab's administrator, not as the istiod ServiceAccount with the chart's
// ClusterRole; there is no Service, so clients dial its address and check
// the name istio.ServerName; there is no Envoy to configure.
type Istiod struct {
	// Cluster is the cluster's name; CLUSTER_ID is set to it.
	Cluster string
	// TrustDomain is the mesh config's trustDomain; Aliases its
	// trustDomainAliases.
	TrustDomain string
	Aliases     []string
	// SecureGRPCAddr is 127.0.0.1:<port> of the CA and xDS over TLS (15012
	// in a pod).
	SecureGRPCAddr string
	// HTTPAddr serves /ready and debug endpoints (8080 in a pod).
	HTTPAddr string
	// MonitoringAddr serves istiod's Prometheus metrics (15014 in a pod).
	MonitoringAddr string
	// LogPath receives istiod's output, over restarts.
	LogPath string
	// CACerts keeps ROOT_CA_DIR, the volume of Secret istio-system/cacerts.
	CACerts *Projector
	// MeshConfig keeps the volume of ConfigMap istio-system/istio, whose
	// "mesh" file istiod reads with --meshConfig.
	MeshConfig *Projector

	binary string
	dir    string
	args   []string
	env    []string
	kube   kubernetes.Interface

	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	exitErr   error
	starts    int
	startedAt time.Time
}

type istiodSpec struct {
	binary      string
	dir         string
	trustDomain string
	aliases     []string
}

// startIstiod writes the cluster's mesh ConfigMap, mounts it and cacerts
// through projectors, and starts istiod. With no cacerts, istiod runs its
// own self-signed CA (Istio's default).
func startIstiod(ctx context.Context, c *Cluster, spec istiodSpec) (*Istiod, error) {
	i := &Istiod{
		Cluster:     c.Name,
		TrustDomain: spec.trustDomain,
		Aliases:     spec.aliases,
		LogPath:     filepath.Join(spec.dir, "istiod.log"),
		binary:      spec.binary,
		dir:         spec.dir,
		kube:        c.Clientset,
	}
	if err := os.MkdirAll(spec.dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating istiod's directory: %w", err)
	}
	if err := c.ensureNamespace(ctx, istio.Namespace); err != nil {
		return nil, err
	}
	if err := i.writeMeshConfig(ctx, c); err != nil {
		return nil, err
	}
	var err error
	if i.MeshConfig, err = ProjectConfigMap(ctx, c.Clientset, istio.Namespace, istio.MeshConfigMap, filepath.Join(spec.dir, "config")); err != nil {
		return nil, err
	}
	if i.CACerts, err = ProjectSecret(ctx, c.Clientset, istio.Namespace, istio.CACertsSecret, filepath.Join(spec.dir, "cacerts")); err != nil {
		i.MeshConfig.Stop()
		return nil, err
	}
	if err := i.configure(c); err != nil {
		i.stopProjectors()
		return nil, err
	}
	if err := i.Start(ctx); err != nil {
		i.stopProjectors()
		return nil, err
	}
	return i, nil
}

// writeMeshConfig creates the istio ConfigMap as the istio-discovery chart
// renders it for a multi-cluster mesh whose clusters keep their own trust
// domains: this cluster's trust domain, and the others' as aliases.
func (i *Istiod) writeMeshConfig(ctx context.Context, c *Cluster) error {
	mc := &meshv1alpha1.MeshConfig{
		TrustDomain:        i.TrustDomain,
		TrustDomainAliases: i.Aliases,
		RootNamespace:      istio.Namespace,
		DefaultConfig:      &meshv1alpha1.ProxyConfig{DiscoveryAddress: istio.ServerName + ":15012"},
	}
	js, err := protojson.Marshal(mc)
	if err != nil {
		return fmt.Errorf("encoding the mesh config: %w", err)
	}
	meshYAML, err := yaml.JSONToYAML(js)
	if err != nil {
		return fmt.Errorf("encoding the mesh config: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: istio.Namespace, Name: istio.MeshConfigMap},
		Data:       map[string]string{"mesh": string(meshYAML), "meshNetworks": "networks: {}\n"},
	}
	if err := c.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ConfigMap %s/%s in %s: %w", istio.Namespace, istio.MeshConfigMap, c.Name, err)
	}
	return nil
}

// configure picks istiod's ports and builds its command line and
// environment, those of the chart's Deployment with lab addresses.
func (i *Istiod) configure(c *Cluster) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	i.SecureGRPCAddr, i.HTTPAddr, i.MonitoringAddr = addr(ports[0]), addr(ports[1]), addr(ports[2])
	i.args = []string{"discovery",
		"--kubeconfig", c.KubeconfigPath,
		"--meshConfig", filepath.Join(i.MeshConfig.Dir, "mesh"),
		"--networksConfig", filepath.Join(i.MeshConfig.Dir, "meshNetworks"),
		"--secureGRPCAddr", i.SecureGRPCAddr,
		"--httpAddr", i.HTTPAddr,
		"--monitoringAddr", i.MonitoringAddr,
		"--grpcAddr", addr(ports[3]),
		"--httpsAddr", addr(ports[4]),
		"--ctrlz_address", "127.0.0.1", "--ctrlz_port", strconv.Itoa(ports[5]),
		// Nothing to drain: no proxy connects. A pod's default, 10s, would
		// only slow every restart.
		"--shutdownDuration", "1s",
	}
	i.env = append(os.Environ(),
		"HOME="+i.dir,
		"ROOT_CA_DIR="+i.CACerts.Dir,
		"POD_NAMESPACE="+istio.Namespace,
		"POD_NAME=istiod-"+c.Name,
		"SERVICE_ACCOUNT=istiod",
		"REVISION=default",
		"CLUSTER_ID="+c.Name,
		"PILOT_CERT_PROVIDER=istiod",
		"PILOT_ENABLE_ANALYSIS=false",
		// Accept a root-cert.pem that adds or drops roots, which a root
		// rotation needs (the chart leaves it to the user).
		"ISTIO_MULTIROOT_MESH=true",
	)
	return nil
}

// Start starts istiod and waits until it reports ready and its CA has
// published a trust bundle in istio-system. It is an error to start a
// running istiod.
func (i *Istiod) Start(ctx context.Context) error {
	cmd, done, err := i.launch()
	if err != nil {
		return err
	}
	if err := i.waitReady(ctx, done); err != nil {
		i.mu.Lock()
		i.cmd = nil
		i.mu.Unlock()
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return errors.Join(err, stopProcess(stopCtx, cmd, done))
	}
	return nil
}

// launch starts the process; done closes when it has exited.
func (i *Istiod) launch() (*exec.Cmd, chan struct{}, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd != nil {
		return nil, nil, fmt.Errorf("istiod for %s is already running", i.Cluster)
	}
	logFile, err := os.OpenFile(i.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening istiod's log: %w", err)
	}
	i.starts++
	fmt.Fprintf(logFile, "# lab: starting istiod for cluster %s (start %d) at %s\n", i.Cluster, i.starts, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(i.binary, i.args...)
	// istiod resolves its default paths (./etc/cacerts, ./var/run/secrets/…)
	// against its working directory: keep them in the lab.
	cmd.Dir = i.dir
	cmd.Env = i.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, nil, fmt.Errorf("starting istiod for %s: %w", i.Cluster, err)
	}
	done := make(chan struct{})
	i.cmd, i.done, i.exitErr, i.startedAt = cmd, done, nil, time.Now()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		i.mu.Lock()
		if i.cmd == cmd {
			i.exitErr = fmt.Errorf("istiod for cluster %s exited (%v); its log: %s", i.Cluster, err, i.LogPath)
		}
		i.mu.Unlock()
		close(done)
	}()
	return cmd, done, nil
}

func (i *Istiod) waitReady(ctx context.Context, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + i.HTTPAddr + "/ready"
	if err := poll(ctx, 2*time.Minute, exited, "istiod for "+i.Cluster+" to be ready (log: "+i.LogPath+")", func() (bool, error) {
		resp, err := client.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return err
	}
	// istiod publishes istio-ca-root-cert once it leads its namespace
	// controller; other namespaces get theirs moments later.
	return poll(ctx, 2*time.Minute, exited, "istiod for "+i.Cluster+" to publish "+istio.RootCertConfigMap+" (log: "+i.LogPath+")", func() (bool, error) {
		_, err := i.kube.CoreV1().ConfigMaps(istio.Namespace).Get(ctx, istio.RootCertConfigMap, metav1.GetOptions{})
		return err == nil, nil
	})
}

// ActiveMesh is the mesh config istiod runs with, from its debug endpoint
// (/debug/mesh on its HTTP address): what it read through --meshConfig.
func (i *Istiod) ActiveMesh(ctx context.Context) (*meshv1alpha1.MeshConfig, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+i.HTTPAddr+"/debug/mesh", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading istiod's mesh config: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading istiod's mesh config: status %d, %v", resp.StatusCode, err)
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, mc); err != nil {
		return nil, fmt.Errorf("decoding istiod's mesh config: %w", err)
	}
	return mc, nil
}

// Stop stops istiod with SIGTERM (SIGKILL after a grace period), as
// kubelet stops a container. The projectors keep running.
func (i *Istiod) Stop(ctx context.Context) error {
	i.mu.Lock()
	cmd, done := i.cmd, i.done
	i.cmd = nil
	i.mu.Unlock()
	if cmd == nil {
		return nil
	}
	return stopProcess(ctx, cmd, done)
}

// Restart stops and starts istiod, as `kubectl rollout restart
// deployment/istiod` replaces its pod. Istio's plug-in CA guide asks for
// it after cacerts is first created: an istiod that started on its own
// self-signed CA does not watch ROOT_CA_DIR.
func (i *Istiod) Restart(ctx context.Context) error {
	if err := i.Stop(ctx); err != nil {
		return err
	}
	return i.Start(ctx)
}

// Kill ends istiod with SIGKILL, without waiting: a fault for tests.
func (i *Istiod) Kill() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil {
		return fmt.Errorf("istiod for %s is not running", i.Cluster)
	}
	return i.cmd.Process.Kill()
}

// Exited is nil while istiod runs (or was stopped by the lab), and says
// that it exited on its own, naming its log file, once it did.
func (i *Istiod) Exited() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.exitErr
}

// PID is the running istiod's process ID, or 0.
func (i *Istiod) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil || i.exitErr != nil {
		return 0
	}
	return i.cmd.Process.Pid
}

// ResidentBytes is the running istiod's resident set size.
func (i *Istiod) ResidentBytes() uint64 {
	if pid := i.PID(); pid != 0 {
		return ResidentBytes(pid)
	}
	return 0
}

// PeakResidentBytes is the running istiod's peak resident set size.
func (i *Istiod) PeakResidentBytes() uint64 {
	if pid := i.PID(); pid != 0 {
		return PeakResidentBytes(pid)
	}
	return 0
}

func (i *Istiod) stop(ctx context.Context) error {
	err := i.Stop(ctx)
	i.stopProjectors()
	return err
}

func (i *Istiod) stopProjectors() {
	if i.CACerts != nil {
		i.CACerts.Stop()
	}
	if i.MeshConfig != nil {
		i.MeshConfig.Stop()
	}
}

// LogMark is a position in istiod's log: reads from it see only what
// istiod logged after it was taken.
type LogMark int64

// Mark returns the current end of istiod's log.
func (i *Istiod) Mark() LogMark {
	st, err := os.Stat(i.LogPath)
	if err != nil {
		return 0
	}
	return LogMark(st.Size())
}

// LogLine is one line of istiod's log.
type LogLine struct {
	// At is istiod's own timestamp of the line (zero if it has none).
	At   time.Time
	Text string
}

// Message is the line without istiod's timestamp and level.
func (l LogLine) Message() string {
	fields := strings.SplitN(l.Text, "\t", 3)
	return fields[len(fields)-1]
}

// LinesSince returns istiod's log lines after mark that contain any of
// substrs (every line when substrs is empty).
func (i *Istiod) LinesSince(mark LogMark, substrs ...string) ([]LogLine, error) {
	f, err := os.Open(i.LogPath)
	if err != nil {
		return nil, fmt.Errorf("reading istiod's log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(int64(mark), io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading istiod's log %s: %w", i.LogPath, err)
	}
	var out []LogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		text := sc.Text()
		if len(substrs) > 0 && !containsAny(text, substrs) {
			continue
		}
		line := LogLine{Text: text}
		if ts, _, ok := strings.Cut(text, "\t"); ok {
			line.At, _ = time.Parse(time.RFC3339Nano, ts)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading istiod's log %s: %w", i.LogPath, err)
	}
	return out, nil
}

// Reaction is istiod's handling of one change of ROOT_CA_DIR, read from
// its log: from its "Update Istiod cacerts" line, after which it reads the
// files, to the line that ends it.
type Reaction struct {
	// Began is istiod's timestamp of "Update Istiod cacerts".
	Began time.Time
	// Verdict is the success line, or the refusal with which istiod kept
	// its current CA.
	Verdict LogLine
	Refused bool
}

// Reactions returns istiod's finished reactions to changes of ROOT_CA_DIR
// logged after mark, in order.
func (i *Istiod) Reactions(mark LogMark) ([]Reaction, error) {
	lines, err := i.LinesSince(mark, append([]string{istio.UpdateCACertsLine, istio.ReloadedCACertsLine}, istio.CACertsRefusals()...)...)
	if err != nil {
		return nil, err
	}
	var out []Reaction
	var began time.Time
	for _, l := range lines {
		switch {
		case strings.Contains(l.Text, istio.UpdateCACertsLine):
			began = l.At
		case !began.IsZero():
			out = append(out, Reaction{Began: began, Verdict: l, Refused: !strings.Contains(l.Text, istio.ReloadedCACertsLine)})
			began = time.Time{}
		}
	}
	return out, nil
}

// WaitReaction waits for istiod's reaction to a projection of cacerts that
// became visible at projected: the first reaction after mark that began
// later, and so read those files (istiod's file watcher waits 100ms after
// an event; a reaction that began earlier read the previous version). It
// fails, naming istiod's log file, if istiod exits first.
func (i *Istiod) WaitReaction(ctx context.Context, mark LogMark, projected time.Time, timeout time.Duration) (Reaction, error) {
	var got Reaction
	err := WaitFor(ctx, timeout, func(context.Context) error {
		rs, err := i.Reactions(mark)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !r.Began.Before(projected) {
				got = r
				return nil
			}
		}
		if err := i.Exited(); err != nil {
			return Final(err)
		}
		return fmt.Errorf("istiod for %s has not reacted to the cacerts projected at %s yet (log: %s)",
			i.Cluster, projected.UTC().Format(time.RFC3339Nano), i.LogPath)
	})
	return got, err
}

// StartedAt is when the running istiod was started (the zero time if it
// is not running): a volume projected before that is what it loaded at
// start.
func (i *Istiod) StartedAt() time.Time {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil {
		return time.Time{}
	}
	return i.startedAt
}

// CACertsRefusedError says that istiod refused a cacerts, quoting its log.
type CACertsRefusedError struct {
	Cluster string
	Line    LogLine
	LogPath string
}

func (e *CACertsRefusedError) Error() string {
	return fmt.Sprintf("istiod for cluster %s refused the new cacerts and kept its CA, logging at %s: %q (log: %s)",
		e.Cluster, e.Line.At.UTC().Format("15:04:05.000000"), e.Line.Message(), e.LogPath)
}

func containsAny(s string, substrs []string) bool {
	for _, sub := range substrs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// freePorts returns n distinct free ports on 127.0.0.1, holding each open
// until all are chosen so that none is picked twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
