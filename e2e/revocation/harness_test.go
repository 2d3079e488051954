package revocation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/meshtrust/meshtrust/e2e/istio"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/e2e/workload"
	"github.com/meshtrust/meshtrust/internal/crlexchange"
	"github.com/meshtrust/meshtrust/syncer"
)

const (
	namespace     = "default"
	clusterIssuer = "meshtrust-vault"
	// waitLimit bounds every single wait, far above what a step needs, so
	// that a loaded 2-core machine does not make the test flaky.
	waitLimit = 2 * time.Minute
)

// env is one lab with meshtrust enrolled in every cluster.
type env struct {
	t           testing.TB
	ctx         context.Context
	lab         *lab.Lab
	owner       *mesh.CLI
	vault       *vaultapi.Client
	logs        *os.File
	agents      map[string]*istio.Agent
	controllers map[string]*mesh.Controllers
	metrics     map[string]prometheus.Gatherer
}

func newEnv(t testing.TB, istiod bool, clusters ...string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	t.Cleanup(cancel)
	l := lab.New(t, lab.Options{Clusters: clusters, IssuanceBackoff: 10 * time.Second, Istiod: istiod})
	e := &env{t: t, ctx: ctx, lab: l, agents: map[string]*istio.Agent{}, controllers: map[string]*mesh.Controllers{}, metrics: map[string]prometheus.Gatherer{}}
	var err error
	if e.owner, err = mesh.NewCLI(l, clusters[0]); err != nil {
		t.Fatal(err)
	}
	if e.vault, err = l.Vault.Client(); err != nil {
		t.Fatal(err)
	}
	if e.logs, err = os.Create(filepath.Join(l.Dir, "meshtrust-controllers.log")); err != nil {
		t.Fatal(err)
	}
	// Client-go reflectors log through controller-runtime's global logger.
	ctrl.SetLogger(zap.New(zap.WriteTo(e.logs)))
	t.Cleanup(func() {
		for _, m := range e.controllers {
			_ = m.Stop()
		}
		if t.Failed() {
			t.Logf("meshtrust controller logs: %s", e.logs.Name())
		}
	})
	if istiod {
		for _, n := range clusters {
			a, err := mesh.Workload(l.Cluster(n), namespace, "sa-"+n)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Close)
			e.agents[n] = a
		}
	}
	e.cli("vault", "bootstrap")
	return e
}

// cli runs `meshtrust args...` as the Vault owner and fails on a non-zero
// exit; it returns standard output.
func (e *env) cli(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.owner.Run(e.ctx, args...)
	if code != 0 {
		e.t.Fatalf("meshtrust %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// enrol enrols each cluster and starts meshtrust's controllers there
// (enableIssuer false: the syncer alone).
func (e *env) enrol(names ...string) {
	e.t.Helper()
	for _, n := range names {
		if _, err := e.owner.Enrol(e.ctx, e.lab.Cluster(n)); err != nil {
			e.t.Fatal(err)
		}
		e.start(n, true)
	}
}

func (e *env) start(name string, issuer bool) {
	e.t.Helper()
	if m := e.controllers[name]; m != nil {
		if err := m.Stop(); err != nil {
			e.t.Fatal(err)
		}
	}
	opts := mesh.ControllerOptions(zap.New(zap.WriteTo(e.logs)).WithValues("cluster", name))
	opts.EnableIssuer = issuer
	m, err := mesh.StartControllers(e.ctx, e.lab.Cluster(name), opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.controllers[name] = m
	e.metrics[name] = opts.MetricsRegistry.(prometheus.Gatherer)
}

// waitCRLSynced waits until the cluster's intermediate Certificate says
// ca-crl.pem is complete (CRLSynced=True) and cacerts carries it.
func (e *env) waitCRLSynced(name string) *corev1.Secret {
	e.t.Helper()
	c := e.lab.Cluster(name)
	var sec *corev1.Secret
	lab.Eventually(e.t, waitLimit, name+"'s cacerts with a complete ca-crl.pem", func(ctx context.Context) error {
		crt, err := mesh.Intermediate(ctx, c)
		if err != nil {
			return err
		}
		if err := mesh.ReadyAt(crt, 0); err != nil {
			return err
		}
		if err := mesh.CRLSynced(crt); err != nil {
			return err
		}
		if !apiutil.CertificateHasCondition(crt, cmapi.CertificateCondition{Type: syncer.ConditionCACertsSynced, Status: cmmeta.ConditionTrue}) {
			return fmt.Errorf("%s not True: %+v", syncer.ConditionCACertsSynced, crt.Status.Conditions)
		}
		if sec, err = mesh.CACerts(ctx, c); err != nil {
			return err
		}
		if len(sec.Data[istio.CRLKey]) == 0 {
			return errors.New("cacerts has no ca-crl.pem")
		}
		return nil
	})
	return sec
}

// exchange is the CRL exchange ConfigMap of enrol's VaultClusterIssuer.
func exchange() types.NamespacedName {
	return types.NamespacedName{Namespace: mesh.ControllerNamespace, Name: crlexchange.ConfigMapName(crlexchange.KindClusterIssuer, clusterIssuer)}
}

// serve gets the cluster's workload a certificate from its istiod, with
// the bundle and CRLs its istiod publishes.
func (e *env) serve(ctx context.Context, name string) (*mesh.Served, error) {
	return mesh.Serve(ctx, e.lab.Cluster(name), e.agents[name], namespace)
}

// handshake has from's workload call to's, each side verifying the other
// with its own cluster's istio-ca-root-cert and istio-ca-crl, as Envoy
// does.
func (e *env) handshake(ctx context.Context, from, to string) error {
	client, err := e.serve(ctx, from)
	if err != nil {
		return err
	}
	server, err := e.serve(ctx, to)
	if err != nil {
		return err
	}
	return handshake(ctx, client, e.agents[from].ID(), server, e.agents[to].ID())
}

func handshake(ctx context.Context, client *mesh.Served, clientID string, server *mesh.Served, serverID string) error {
	_, err := workload.Handshake(ctx,
		workload.Peer{Cert: server.Identity.Cert, Roots: server.Roots.Pool, CRLs: server.CRLs, Expect: clientID},
		workload.Peer{Cert: client.Identity.Cert, Roots: client.Roots.Pool, CRLs: client.CRLs, Expect: serverID})
	return err
}

// events lists the reasons and notes of the events about obj.
func (e *env) events(ctx context.Context, c *lab.Cluster, obj client.Object) ([]string, error) {
	var list eventsv1.EventList
	if err := c.Client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Regarding.UID == obj.GetUID() {
			out = append(out, ev.Type+" "+ev.Reason+" "+ev.Note)
		}
	}
	return out, nil
}

// counter sums the series of a counter whose labels include want.
func counter(g prometheus.Gatherer, name string, want map[string]string) float64 {
	n, _ := mesh.Counter(g, name, want)
	return n
}
