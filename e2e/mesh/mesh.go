// Package mesh runs meshtrust against the lab the way an operator does: the
// Vault owner's `meshtrust` CLI, the YAML `meshtrust vault enroll` prints
// applied to a cluster, meshtrust's controllers wired as
// cmd/meshtrust-controller wires them, and the cacerts Secret they write.
// The federation story (`make demo`) and the e2e tests share it, so they
// exercise meshtrust the same way.
package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	controllerapp "github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app"
	cliapp "github.com/meshtrust/meshtrust/cmd/meshtrust/app"
	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/syncer"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// The names the enrol command puts in the YAML it prints (its defaults), and
// where Istio reads its CA.
const (
	IstioNamespace           = istio.Namespace
	ControllerNamespace      = "meshtrust-system"
	ControllerServiceAccount = "meshtrust-controller"
	// IntermediateCertificate is the cert-manager Certificate, in
	// IstioNamespace, for the cluster's intermediate CA.
	IntermediateCertificate = "istio-ca"
	// CACertsSecret is Istio's plugged-CA Secret in IstioNamespace, which
	// the syncer writes.
	CACertsSecret = istio.CACertsSecret
	// WorkloadTTL is the lifetime of the workload certificates the stories
	// ask istiod for (or sign in-process, as cross-checks).
	WorkloadTTL = time.Hour
)

// CLI is the Vault owner's `meshtrust`, run in this process with the lab's
// Vault address and root token.
type CLI struct {
	// Kubeconfig names every lab cluster, one context each, named after the
	// cluster.
	Kubeconfig string
	env        map[string]string
}

// NewCLI writes the kubeconfig for every cluster of l into l.Dir, with
// current as its current context; l.Dir is the CLI's HOME too.
func NewCLI(l *lab.Lab, current string) (*CLI, error) {
	configs := map[string]*rest.Config{}
	for _, c := range l.Clusters {
		configs[c.Name] = c.Config
	}
	path := filepath.Join(l.Dir, "kubeconfig")
	if err := lab.WriteKubeconfig(path, configs, current); err != nil {
		return nil, err
	}
	return &CLI{
		Kubeconfig: path,
		env:        map[string]string{"VAULT_ADDR": l.Vault.Addr, "VAULT_TOKEN": l.Vault.RootToken, "HOME": l.Dir},
	}, nil
}

// Run runs `meshtrust args...` with empty standard input.
func (c *CLI) Run(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = cliapp.Main(ctx, args, cliapp.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		cliapp.WithGetenv(func(k string) string { return c.env[k] }))
	return out.String(), errOut.String(), code
}

// Enrol enrols cluster c as the Vault owner does: `meshtrust vault enroll`
// with the cluster's name as its trust domain, against the cluster's own
// kubeconfig context, plus the extra flags; then the YAML it printed is
// applied to c (InstallEnrollment). It returns kind/name of every object
// applied.
func (c *CLI) Enrol(ctx context.Context, cluster *lab.Cluster, extra ...string) ([]string, error) {
	args := append([]string{"vault", "enroll", "--cluster", cluster.Name, "--trust-domain", cluster.Name,
		"--kubeconfig", c.Kubeconfig, "--context", cluster.Name}, extra...)
	// Only standard output is YAML; standard error says what was done.
	out, errOut, code := c.Run(ctx, args...)
	if code != 0 {
		return nil, fmt.Errorf("meshtrust %s: exit %d: %s", strings.Join(args, " "), code, out+errOut)
	}
	return InstallEnrollment(ctx, cluster, out)
}

// InstallEnrollment does on cluster c what an operator does with the YAML
// `meshtrust vault enroll` printed: it creates the namespaces and the
// controller's ServiceAccount the YAML refers to, then applies the YAML as
// `kubectl apply --server-side` would. It returns kind/name of every object
// applied.
func InstallEnrollment(ctx context.Context, c *lab.Cluster, enrollYAML string) ([]string, error) {
	for _, ns := range []string{ControllerNamespace, IstioNamespace} {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ControllerNamespace, Name: ControllerServiceAccount}}
	if err := c.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating the controller's ServiceAccount in %s: %w", c.Name, err)
	}
	applied, err := apply(ctx, c.Client, enrollYAML)
	if err != nil {
		return nil, fmt.Errorf("applying the YAML enroll printed for %s: %w", c.Name, err)
	}
	return applied, nil
}

// apply server-side-applies every object of a multi-document YAML stream.
func apply(ctx context.Context, c client.Client, yamlText string) ([]string, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(yamlText), 4096)
	var applied []string
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return applied, err
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("kubectl"), client.ForceOwnership); err != nil {
			return applied, fmt.Errorf("applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		applied = append(applied, obj.GetKind()+"/"+obj.GetName())
	}
	if len(applied) == 0 {
		return nil, errors.New("no objects in the YAML")
	}
	return applied, nil
}

// ControllerOptions are cmd/meshtrust-controller's defaults, adjusted to
// run in this process next to other clusters' controllers: a registry of
// its own (several managers share the process) and logs to logger. The
// cluster resource namespace is the one enroll uses.
func ControllerOptions(logger logr.Logger) controllerapp.Options {
	opts := controllerapp.DefaultOptions()
	opts.InProcess = true
	opts.MetricsRegistry = prometheus.NewRegistry()
	opts.Issuer.ClusterResourceNamespace = ControllerNamespace
	opts.Syncer.CRLNamespace = ControllerNamespace
	// The lab's clusters have no kubelet delay: a CRL published in Vault
	// reaches the others' istio-ca-crl within one refresh (plus
	// milliseconds), so a new intermediate waits a little longer than that.
	opts.Issuer.CRLRefreshInterval = CRLRefreshInterval
	opts.Syncer.CRLPropagationDelay = CRLPropagationDelay
	opts.Tune = func(o *ctrl.Options) { o.Logger = logger }
	return opts
}

// The lab's CRL timings (production defaults: a minute, five minutes).
const (
	CRLRefreshInterval  = 2 * time.Second
	CRLPropagationDelay = 5 * time.Second
)

// Controllers is meshtrust's issuer and syncer running for one cluster in
// this process.
type Controllers struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what the manager's Start returned; read after done
}

// StartControllers builds meshtrust's manager for cluster c as
// cmd/meshtrust-controller does and starts it. It runs until Stop: ctx
// passes on its values, not its cancellation.
func StartControllers(ctx context.Context, c *lab.Cluster, opts controllerapp.Options) (*Controllers, error) {
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	mgr, err := controllerapp.NewManager(mctx, c.Config, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("building meshtrust's controllers for %s: %w", c.Name, err)
	}
	m := &Controllers{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		if err := mgr.Start(mctx); err != nil {
			m.err = fmt.Errorf("meshtrust's controllers in %s: %w", c.Name, err)
		}
	}()
	return m, nil
}

// Exited is the error the controllers stopped with, if they already stopped
// on their own with one; otherwise nil.
func (m *Controllers) Exited() error {
	select {
	case <-m.done:
		return m.err
	default:
		return nil
	}
}

// Stop stops the controllers, waits for them to return, and returns their
// error, if any.
func (m *Controllers) Stop() error {
	m.cancel()
	<-m.done
	return m.err
}

// CACerts reads the cluster's cacerts Secret straight from its API server.
func CACerts(ctx context.Context, c *lab.Cluster) (*corev1.Secret, error) {
	var sec corev1.Secret
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: IstioNamespace, Name: CACertsSecret}, &sec); err != nil {
		return nil, err
	}
	return &sec, nil
}

// Intermediate reads the cluster's intermediate Certificate.
func Intermediate(ctx context.Context, c *lab.Cluster) (*cmapi.Certificate, error) {
	return Certificate(ctx, c, IstioNamespace, IntermediateCertificate)
}

// Certificate reads a cert-manager Certificate straight from the API server.
func Certificate(ctx context.Context, c *lab.Cluster, ns, name string) (*cmapi.Certificate, error) {
	var crt cmapi.Certificate
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &crt); err != nil {
		return nil, err
	}
	return &crt, nil
}

// TriggerRenewal renews the cluster's intermediate (Renew).
func TriggerRenewal(ctx context.Context, c *lab.Cluster, within time.Duration, by string) error {
	return Renew(ctx, c, IstioNamespace, IntermediateCertificate, within, by)
}

// Renew does what `cmctl renew` does to the Certificate ns/name: it sets
// its Issuing condition, and cert-manager issues a new revision. It retries
// (a conflicting update, say) for up to within; by names the caller in the
// condition's message.
func Renew(ctx context.Context, c *lab.Cluster, ns, name string, within time.Duration, by string) error {
	return lab.WaitFor(ctx, within, func(ctx context.Context) error {
		crt, err := Certificate(ctx, c, ns, name)
		if err != nil {
			return err
		}
		apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
			"ManuallyTriggered", "Certificate re-issuance manually triggered by "+by)
		return c.Client.Status().Update(ctx, crt)
	})
}

// ReadyAt says why crt is not yet Ready at revision rev or later, or nil
// once it is. Later counts: cert-manager may legitimately issue twice, and
// a test that must see exactly one issuance checks the revision itself.
func ReadyAt(crt *cmapi.Certificate, rev int) error {
	if got := decision.Revision(crt); got < rev {
		return fmt.Errorf("revision %d, want %d", got, rev)
	}
	if !apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}) {
		return fmt.Errorf("revision %d not Ready: %+v", decision.Revision(crt), crt.Status.Conditions)
	}
	return nil
}

// CRLSynced says why the syncer does not report crt's ca-crl.pem complete
// yet (its CRLSynced condition), or nil once it does.
func CRLSynced(crt *cmapi.Certificate) error {
	if apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: syncer.ConditionCRLSynced, Status: cmmeta.ConditionTrue}) {
		return nil
	}
	c := apiutil.GetCertificateCondition(crt, syncer.ConditionCRLSynced)
	if c == nil {
		return fmt.Errorf("no %s condition yet", syncer.ConditionCRLSynced)
	}
	return fmt.Errorf("%s=%s: %s: %s", syncer.ConditionCRLSynced, c.Status, c.Reason, c.Message)
}

// CounterTotal is the sum of every series of the counter called name that g
// gathers (0 when there is none), e.g. meshtrust_cacerts_sync_total from a
// manager's registry.
func CounterTotal(g prometheus.Gatherer, name string) (float64, error) {
	return Counter(g, name, nil)
}

// Counter is the sum of the series of the counter called name whose labels
// include want.
func Counter(g prometheus.Gatherer, name string, want map[string]string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, fmt.Errorf("gathering metrics: %w", err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			n += m.GetCounter().GetValue()
		}
	}
	return n, nil
}
