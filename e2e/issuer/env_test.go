package issuer_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/e2e/mesh"
	"github.com/meshtrust/meshtrust/issuer"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

const (
	// clusterResourceNS is where VaultClusterIssuers read Secrets.
	clusterResourceNS = "meshtrust-system"
	trustDomain       = "east.mesh"
	issuerPolicy      = "meshtrust-issuer"
	deniedPolicy      = "meshtrust-denied"
	leafRole          = "workloads"
	// leafMaxTTL is the role's max_ttl, which truncation tests exceed.
	leafMaxTTL = time.Hour
	// reviewerSA is the service account issuers log in to Vault as.
	issuerSA = "vault-issuer"
)

// env is one lab, one Vault set up as a security team would, and the
// issuer's controllers running in-process against the lab's cluster. Tests
// share it because starting a lab is the dominant cost.
type env struct {
	lab     *lab.Lab
	cluster *lab.Cluster
	client  client.Client
	vault   *vaultapi.Client
	rootPEM string
	roleID  string
	// lockoutRoleID is an AppRole role only failed logins use: Vault locks
	// a role ID out after a few failures, and that must not hit roleID.
	lockoutRoleID string
	registry      *prometheus.Registry
	cancel        context.CancelFunc
	done          chan error
	logPath       string
}

var (
	sharedOnce sync.Once
	shared     *env
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

// getEnv starts the shared environment on first use, so a benchmark-only
// run (-run '^$') never starts it.
func getEnv(t *testing.T) *env {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared, sharedErr = startEnv(ctx, lab.Options{Vault: lab.VaultPersistent}, 3*time.Second)
	})
	if sharedErr != nil {
		t.Fatalf("starting the issuer test environment: %v", sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			shared.lab.KeepDir()
			t.Logf("issuer log: %s; lab logs kept in %s", shared.logPath, shared.lab.Dir)
		}
	})
	return shared
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

func startEnv(ctx context.Context, opts lab.Options, healthEvery time.Duration) (*env, error) {
	// The lab makes and removes its own directory, which holds the issuer's
	// log too; a failed test keeps it, as does MESHTRUST_LAB_KEEP.
	opts.KeepDir = os.Getenv(lab.KeepEnv) != ""
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	e := &env{lab: l, cluster: l.Clusters[0], logPath: filepath.Join(l.Dir, "issuer.log")}
	if err := e.setup(ctx, healthEvery); err != nil {
		l.KeepDir()
		e.stop()
		return nil, fmt.Errorf("%w (logs kept in %s)", err, l.Dir)
	}
	return e, nil
}

func (e *env) setup(ctx context.Context, healthEvery time.Duration) error {
	var err error
	cfg := rest.CopyConfig(e.cluster.Config)
	// The client-side rate limiter (default 5 QPS in client-go, 20 in
	// controller-runtime) would otherwise dominate every figure.
	cfg.QPS, cfg.Burst = 1000, 2000
	if e.client, err = client.New(cfg, client.Options{Scheme: newScheme()}); err != nil {
		return err
	}
	if e.vault, err = e.lab.Vault.Client(); err != nil {
		return err
	}
	if err := e.setupVault(ctx); err != nil {
		return fmt.Errorf("setting up Vault: %w", err)
	}
	for _, ns := range []string{clusterResourceNS, "team-a"} {
		if err := e.cluster.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: issuerSA}}
		if err := e.client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return e.startManager(cfg, healthEvery)
}

// setupVault mounts a PKI engine with an EC root, a leaf role capped at
// leafMaxTTL, policies, and the Kubernetes and AppRole auth methods.
func (e *env) setupVault(ctx context.Context) error {
	vc := e.vault
	if err := vc.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		return err
	}
	root, err := vc.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{
		"common_name": "meshtrust e2e root", "key_type": "ec", "key_bits": 256, "ttl": "87600h", "issuer_name": "root-1",
	})
	if err != nil {
		return err
	}
	e.rootPEM = root.Data["certificate"].(string)
	if _, err := vc.Logical().WriteWithContext(ctx, "pki/roles/"+leafRole, map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "require_cn": false,
		"allowed_uri_sans": "spiffe://" + trustDomain + "/*", "key_type": "any",
		"max_ttl": leafMaxTTL.String(), "no_store": true,
	}); err != nil {
		return err
	}
	if err := vc.Sys().PutPolicyWithContext(ctx, issuerPolicy, `
path "pki/root/sign-intermediate" { capabilities = ["update"] }
path "pki/issuer/+/sign-intermediate" { capabilities = ["update"] }
path "pki/sign/`+leafRole+`" { capabilities = ["update"] }
path "pki/issuer/+/sign/`+leafRole+`" { capabilities = ["update"] }
`); err != nil {
		return err
	}
	if err := vc.Sys().PutPolicyWithContext(ctx, deniedPolicy, `path "pki/cert/ca" { capabilities = ["read"] }`); err != nil {
		return err
	}
	if err := e.cluster.ConfigureVaultKubernetesAuth(ctx, vc, "kubernetes"); err != nil {
		return err
	}
	for role, spec := range map[string]map[string]any{
		// A VaultClusterIssuer named "east" presents the default audience.
		"east": {"bound_service_account_names": issuerSA, "bound_service_account_namespaces": clusterResourceNS, "audience": "vault://east"},
		// Namespaced issuers in team-a present an explicit audience.
		"team-a": {"bound_service_account_names": issuerSA, "bound_service_account_namespaces": "team-a", "audience": "meshtrust"},
	} {
		spec["token_policies"] = issuerPolicy
		spec["token_ttl"] = "1h"
		if _, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+role, spec); err != nil {
			return err
		}
	}
	if err := vc.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
		return err
	}
	// Vault locks a role ID out for 15 minutes after 5 failed logins, and
	// the wrong-credentials test fails many on purpose (persistently, on a
	// file backend that outlives a restart). Left on, the lockout turns
	// later logins with the good secret ID into 403s depending on timing.
	disable := true
	if err := vc.Sys().TuneMountWithContext(ctx, "auth/approle", vaultapi.MountConfigInput{
		UserLockoutConfig: &vaultapi.UserLockoutConfigInput{DisableLockout: &disable},
	}); err != nil {
		return err
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/approle/role/issuer", map[string]any{"token_policies": issuerPolicy, "token_ttl": "1h"}); err != nil {
		return err
	}
	rid, err := vc.Logical().ReadWithContext(ctx, "auth/approle/role/issuer/role-id")
	if err != nil {
		return err
	}
	e.roleID = rid.Data["role_id"].(string)
	return nil
}

func (e *env) startManager(cfg *rest.Config, healthEvery time.Duration) error {
	logFile, err := os.Create(e.logPath)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 newScheme(),
		Logger:                 zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Benchmarks start a second manager in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	e.registry = prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	opts := issuer.DefaultOptions()
	opts.ClusterResourceNamespace = clusterResourceNS
	opts.HealthCheckInterval = healthEvery
	opts.MetricsRegistry = e.registry
	if err := issuer.Setup(ctx, mgr, opts); err != nil {
		cancel()
		return err
	}
	e.cancel = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- mgr.Start(ctx) }()
	return nil
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		select {
		case <-e.done:
		case <-time.After(time.Minute):
		}
	}
	_ = e.lab.Stop()
}

// counter sums a counter family's samples whose labels include want.
func (e *env) counter(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	n, err := mesh.Counter(e.registry, name, want)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}

func readyCondition(conds []metav1.Condition) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == "Ready" {
			return &conds[i]
		}
	}
	return nil
}

// waitIssuer waits until obj's Ready condition has status want and, if
// msg is set, a message containing it.
func (e *env) waitIssuer(t testing.TB, obj client.Object, want metav1.ConditionStatus, contains string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	eventually(t, 60*time.Second, fmt.Sprintf("%s Ready=%s", obj.GetName(), want), func() (bool, string) {
		if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err.Error()
		}
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *v1alpha1.VaultIssuer:
			conds = o.Status.Conditions
		case *v1alpha1.VaultClusterIssuer:
			conds = o.Status.Conditions
		}
		got = readyCondition(conds)
		if got == nil {
			return false, "no Ready condition"
		}
		return got.Status == want && (contains == "" || strings.Contains(got.Message, contains)), fmt.Sprintf("%s %s: %s", got.Status, got.Reason, got.Message)
	})
	return got
}

// crCondition returns the request's Ready condition.
func crReady(cr *cmapi.CertificateRequest) *cmapi.CertificateRequestCondition {
	for i := range cr.Status.Conditions {
		if cr.Status.Conditions[i].Type == cmapi.CertificateRequestConditionReady {
			return &cr.Status.Conditions[i]
		}
	}
	return nil
}

// waitCR waits until the request's Ready condition has the reason and a
// message containing contains.
func (e *env) waitCR(t testing.TB, cr *cmapi.CertificateRequest, reason, contains string, timeout time.Duration) *cmapi.CertificateRequest {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("CertificateRequest %s reason %s", cr.Name, reason), func() (bool, string) {
		if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(cr), cr); err != nil {
			return false, err.Error()
		}
		c := crReady(cr)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Reason == reason && strings.Contains(c.Message, contains), fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	})
	return cr
}

// newCR builds a CertificateRequest for the issuer.
func newCR(ns, name string, ref cmmeta.IssuerReference, csr []byte, isCA bool, d time.Duration) *cmapi.CertificateRequest {
	usages := []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment}
	if isCA {
		usages = []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign, cmapi.UsageDigitalSignature}
	}
	return &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: cmapi.CertificateRequestSpec{
			IssuerRef: ref, Request: csr, IsCA: isCA, Usages: usages,
			Duration: &metav1.Duration{Duration: d},
		},
	}
}

func clusterIssuerRef(name string) cmmeta.IssuerReference {
	return cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "VaultClusterIssuer", Name: name}
}

func issuerRef(name string) cmmeta.IssuerReference {
	return cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "VaultIssuer", Name: name}
}

func parseCerts(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no certificate in PEM")
	}
	return out
}

func createOrFail(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
}

// hasEvent reports whether an event with reason regards obj. Events are
// matched by UID: those of an earlier object of the same name (a previous
// -count run) outlive it.
func (e *env) hasEvent(t testing.TB, obj client.Object, reason string) bool {
	t.Helper()
	return e.eventCount(t, obj, reason) > 0
}

// eventCount is how many times an event with reason was emitted about obj,
// counting repeats folded into one Event's series.
func (e *env) eventCount(t testing.TB, obj client.Object, reason string) int {
	t.Helper()
	var list eventsv1.EventList
	if err := e.client.List(context.Background(), &list, client.InNamespace(obj.GetNamespace())); err != nil {
		t.Logf("listing events: %v", err)
		return 0
	}
	n := 0
	for _, ev := range list.Items {
		if ev.Regarding.UID != obj.GetUID() || ev.Reason != reason {
			continue
		}
		n++
		if ev.Series != nil {
			n += int(ev.Series.Count) - 1
		}
	}
	return n
}

// deleteOwnedRequests deletes the CertificateRequests cert-manager made
// for a Certificate: the lab runs no garbage collector, and a leftover
// request would block the next Certificate of the same name.
func (e *env) deleteOwnedRequests(t testing.TB, owner client.Object) {
	t.Helper()
	var list cmapi.CertificateRequestList
	if err := e.client.List(context.Background(), &list, client.InNamespace(owner.GetNamespace())); err != nil {
		t.Logf("listing CertificateRequests: %v", err)
		return
	}
	for i := range list.Items {
		for _, ref := range list.Items[i].OwnerReferences {
			if ref.UID == owner.GetUID() {
				if err := e.client.Delete(context.Background(), &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
					t.Logf("deleting CertificateRequest %s: %v", list.Items[i].Name, err)
				}
			}
		}
	}
}
