package deploy_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	vaultapi "github.com/hashicorp/vault/api"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshtrust/meshtrust/cmd/meshtrust-controller/app"
	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
	"github.com/meshtrust/meshtrust/syncer"
	"github.com/meshtrust/meshtrust/syncer/decision"
)

// leNS holds the leader-election test's Certificate; the chart is
// installed to watch and write it besides istio-system.
const leNS = "mesh-le"

// rbacValues are the values the chart is installed with for the RBAC
// tests: defaults, plus the restart option (so its grant is exercised)
// and a second syncer namespace for the leader-election test.
var rbacValues = []string{
	"syncer.restartDeployments.enabled=true",
	"syncer.watchNamespaces={" + istioNS + "," + leNS + "}",
	"syncer.targetNamespaces={" + istioNS + "," + leNS + "}",
}

// TestRBAC installs the chart's objects on a lab cluster and, acting as
// the chart's ServiceAccount, proves that what the chart grants is enough
// for the controllers' real flows and that what it leaves out is refused.
// The subtests run in order: minimality, then the flows, then leader
// election with two replicas.
func TestRBAC(t *testing.T) {
	c := cluster(t)
	// Bounds the API calls of all subtests, which run in order; generous,
	// since only the polls inside them decide how long anything may take.
	ctx := testCtx(t, 8*time.Minute)
	for _, ns := range []string{releaseNS, istioNS, leNS, unrelatedNS} {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	apply(ctx, t, c, render(t, release, releaseNS, rbacValues...))
	cs := clientset(t, impersonate(c))
	// A ValidatingAdmissionPolicy takes effect a moment after it is
	// stored; probe with dry runs so nothing is created meanwhile.
	lab.Eventually(t, 30*time.Second, "the chart's admission policy to take effect", func(ctx context.Context) error {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "policy-probe"}}
		_, err := cs.CoreV1().Secrets(istioNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if apierrors.IsForbidden(err) {
			return nil
		}
		return fmt.Errorf("a Secret named policy-probe may still be created: %v", err)
	})

	t.Run("minimal", func(t *testing.T) { testMinimal(ctx, t, c, cs) })
	t.Run("sufficient", func(t *testing.T) { testSufficient(ctx, t, c) })
	t.Run("leader election", func(t *testing.T) { testLeaderElection(ctx, t, c) })
}

func wantForbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s: got %v, want Forbidden", what, err)
	}
}

func testMinimal(ctx context.Context, t *testing.T, c *lab.Cluster, cs kubernetes.Interface) {
	// Objects the identity must not touch exist, so a refusal is never a
	// NotFound in disguise.
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: unrelatedNS, Name: "db-password"}, StringData: map[string]string{"password": "x"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: istioNS, Name: "istio-other"}, StringData: map[string]string{"k": "v"}},
	} {
		if err := c.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	ensureServiceAccount(ctx, t, c, releaseNS, "not-in-values")
	ensureServiceAccount(ctx, t, c, unrelatedNS, saName)

	t.Run("reading a Secret in an unrelated namespace is Forbidden", func(t *testing.T) {
		_, err := cs.CoreV1().Secrets(unrelatedNS).Get(ctx, "db-password", metav1.GetOptions{})
		wantForbidden(t, "get unrelated/db-password", err)
		_, err = cs.CoreV1().Secrets(unrelatedNS).List(ctx, metav1.ListOptions{})
		wantForbidden(t, "list Secrets in unrelated", err)
		_, err = cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
		wantForbidden(t, "list Secrets cluster-wide", err)
		_, err = cs.CoreV1().Secrets(releaseNS).List(ctx, metav1.ListOptions{})
		wantForbidden(t, "list Secrets in the cluster-resource namespace (the issuer only gets by name)", err)
	})

	t.Run("writing a Secret other than cacerts in the target namespace is Forbidden", func(t *testing.T) {
		s, err := c.Clientset.CoreV1().Secrets(istioNS).Get(ctx, "istio-other", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.StringData = map[string]string{"k": "overwritten"}
		_, err = cs.CoreV1().Secrets(istioNS).Update(ctx, s, metav1.UpdateOptions{})
		wantForbidden(t, "update istio-system/istio-other", err)
		_, err = cs.CoreV1().Secrets(istioNS).Patch(ctx, "istio-other", types.MergePatchType, []byte(`{"stringData":{"k":"x"}}`), metav1.PatchOptions{})
		wantForbidden(t, "patch istio-system/istio-other", err)
		err = cs.CoreV1().Secrets(istioNS).Delete(ctx, "istio-other", metav1.DeleteOptions{})
		wantForbidden(t, "delete istio-system/istio-other", err)
		// RBAC cannot limit create by name; the chart's
		// ValidatingAdmissionPolicy does.
		_, err = cs.CoreV1().Secrets(istioNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "planted"}}, metav1.CreateOptions{})
		wantForbidden(t, "create istio-system/planted", err)
		if err != nil && !strings.Contains(err.Error(), "may create only Secrets named cacerts") {
			t.Errorf("create refused for another reason than the admission policy: %v", err)
		}
		_, err = cs.CoreV1().Secrets(unrelatedNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts"}}, metav1.CreateOptions{})
		wantForbidden(t, "create unrelated/cacerts", err)
	})

	t.Run("minting a token for a ServiceAccount not named in values is Forbidden", func(t *testing.T) {
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault://east"}}}
		_, err := cs.CoreV1().ServiceAccounts(releaseNS).CreateToken(ctx, "not-in-values", req, metav1.CreateOptions{})
		wantForbidden(t, "token for meshtrust-system/not-in-values", err)
		_, err = cs.CoreV1().ServiceAccounts(unrelatedNS).CreateToken(ctx, saName, req, metav1.CreateOptions{})
		wantForbidden(t, "token for the named ServiceAccount in an unrelated namespace", err)
		// The control: the named one is allowed, so the refusals above are RBAC's.
		if _, err := cs.CoreV1().ServiceAccounts(releaseNS).CreateToken(ctx, saName, req, metav1.CreateOptions{}); err != nil {
			t.Errorf("token for the ServiceAccount named in values: %v", err)
		}
	})

	t.Run("other grants stay narrow", func(t *testing.T) {
		for _, ra := range []authorizationv1.ResourceAttributes{
			{Verb: "sign", Group: "certificates.k8s.io", Resource: "signers", Name: "kubernetes.io/kube-apiserver-client"},
			{Verb: "approve", Group: "certificates.k8s.io", Resource: "signers", Name: "vaultclusterissuers.meshtrust.io/east"},
			{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: istioNS, Name: "not-istiod"},
			{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: unrelatedNS, Name: "istiod"},
			{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: releaseNS, Name: "some-other-lease"},
			{Verb: "list", Group: "cert-manager.io", Resource: "certificates", Namespace: unrelatedNS},
			{Verb: "update", Group: "cert-manager.io", Resource: "certificates", Namespace: istioNS, Name: "istio-ca"},
			{Verb: "create", Group: "cert-manager.io", Resource: "certificaterequests", Namespace: istioNS},
			{Verb: "update", Group: "meshtrust.io", Resource: "vaultclusterissuers", Name: "east"},
			{Verb: "delete", Resource: "secrets", Namespace: istioNS, Name: "cacerts"},
			{Verb: "get", Resource: "secrets", Namespace: leNS + "-x", Name: "cacerts"},
		} {
			sar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}
			got, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed {
				t.Errorf("%s %s/%s %s/%s is allowed", ra.Verb, ra.Group, ra.Resource, ra.Namespace, ra.Name)
			}
		}
	})
}

// Vault set-up for the issuer flow, as `meshtrust vault enroll` would do it
// for the chart's default identity.
const (
	trustDomain = "east.mesh"
	issuerName  = "east"
	leafRole    = "workloads"
)

func setupVault(ctx context.Context, t *testing.T, c *lab.Cluster) (vc *vaultapi.Client, rootPEM string) {
	t.Helper()
	vc, err := shared.Get(t).Vault.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	root, err := vc.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{
		"common_name": "meshtrust deploy e2e root", "key_type": "ec", "key_bits": 256, "ttl": "87600h", "issuer_name": "root-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "pki/roles/"+leafRole, map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "require_cn": false,
		"allowed_uri_sans": "spiffe://" + trustDomain + "/*", "key_type": "any", "max_ttl": "1h", "no_store": true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().PutPolicyWithContext(ctx, "meshtrust-east", `
path "pki/root/sign-intermediate" { capabilities = ["update"] }
path "pki/issuer/+/sign-intermediate" { capabilities = ["update"] }
path "pki/sign/`+leafRole+`" { capabilities = ["update"] }
path "pki/issuer/+/sign/`+leafRole+`" { capabilities = ["update"] }
`); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigureVaultKubernetesAuth(ctx, vc, "kubernetes"); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+issuerName, map[string]any{
		"bound_service_account_names": saName, "bound_service_account_namespaces": releaseNS,
		"audience": "vault://" + issuerName, "token_policies": "meshtrust-east", "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	return vc, root.Data["certificate"].(string)
}

// testSufficient runs the issuer and the syncer in one manager acting as
// the chart's ServiceAccount, through every flow that needs a grant: a
// VaultClusterIssuer logging in with a minted token, an intermediate issued
// through it, cacerts created and istiod restarted, a Kubernetes CSR
// signed, and a scheduled renewal triggered and synced.
func testSufficient(ctx context.Context, t *testing.T, c *lab.Cluster) {
	_, rootPEM := setupVault(ctx, t, c)
	istiod := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: istioNS, Name: "istiod"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "istiod"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "istiod"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "istio/pilot"}}},
			},
		},
	}
	if err := c.Client.Create(ctx, istiod); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	clk := &skewedClock{}
	run := startManager(t, impersonate(c), managerSpec{
		name: "sufficient", issuer: true, syncer: true, clock: clk,
		watchNamespaces: []string{istioNS, leNS}, targets: []string{istioNS, leNS},
	})
	run.eventually(t, time.Minute, "the manager to be elected", func(context.Context) error {
		if !run.elected() {
			return errors.New("not elected")
		}
		return nil
	})

	ci := &v1alpha1.VaultClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: issuerName}, Spec: v1alpha1.VaultIssuerSpec{
		Server:       shared.Get(t).Vault.Addr,
		PKI:          v1alpha1.PKISpec{Mount: "pki", Role: leafRole},
		Intermediate: &v1alpha1.IntermediateSpec{TrustDomain: trustDomain},
		Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.KubernetesAuth{
			MountPath: "kubernetes", Role: issuerName, ServiceAccountRef: v1alpha1.ServiceAccountRef{Name: saName},
		}},
	}}
	if err := c.Client.Create(ctx, ci); err != nil {
		t.Fatal(err)
	}
	run.eventually(t, time.Minute, "VaultClusterIssuer Ready (login with a minted token)", func(ctx context.Context) error {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(ci), ci); err != nil {
			return err
		}
		for _, cond := range ci.Status.Conditions {
			if cond.Type == "Ready" {
				if cond.Status == metav1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("%s: %s", cond.Reason, cond.Message)
			}
		}
		return errors.New("no Ready condition")
	})

	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: istioNS, Name: "istio-ca", Annotations: map[string]string{
			syncer.AnnotationOptIn:            "true",
			syncer.AnnotationRestartAfterSync: "deployment/istiod",
			syncer.AnnotationRotationSchedule: "0 * * * *",
		}},
		Spec: cmapi.CertificateSpec{
			SecretName: "istio-ca-tls", IsCA: true, CommonName: trustDomain + " intermediate CA",
			URIs:        []string{"spiffe://" + trustDomain},
			Duration:    &metav1.Duration{Duration: 720 * time.Hour},
			RenewBefore: &metav1.Duration{Duration: 240 * time.Hour},
			PrivateKey:  &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:   cmmeta.IssuerReference{Group: v1alpha1.GroupVersion.Group, Kind: "VaultClusterIssuer", Name: issuerName},
		},
	}
	if err := c.Client.Create(ctx, crt); err != nil {
		t.Fatal(err)
	}

	t.Run("intermediate issued and cacerts written", func(t *testing.T) {
		waitRevision(t, c, run, istioNS, "istio-ca", 1)
		cacerts := waitCACertsFromSource(t, c, run, istioNS, "istio-ca-tls")
		if !bytes.Contains(cacerts.Data[pki.RootCertKey], []byte(strings.TrimSpace(rootPEM))) {
			t.Error("root-cert.pem does not hold Vault's root")
		}
	})
	t.Run("istiod restarted", func(t *testing.T) {
		waitRestarted(t, c, run, istioNS, "istiod")
	})
	t.Run("Kubernetes CSR signed", func(t *testing.T) {
		testCSRSigned(ctx, t, c, run)
	})
	t.Run("scheduled renewal triggered and synced", func(t *testing.T) {
		crt := getCertificate(ctx, t, c, istioNS, "istio-ca")
		rev := decision.Revision(crt)
		before := getSecret(ctx, t, c, istioNS, "cacerts").Annotations[syncer.AnnotationSerial]
		slot := decision.Baseline(crt).UTC().Truncate(time.Hour).Add(time.Hour)
		clk.setNow(slot.Add(time.Minute))
		poke(ctx, t, c, istioNS, "istio-ca")
		run.eventually(t, time.Minute, "the syncer to record the slot (Certificate patch)", func(ctx context.Context) error {
			crt, err := fetchCertificate(ctx, c, istioNS, "istio-ca")
			if err != nil {
				return err
			}
			if crt.Annotations[syncer.AnnotationLastRotation] == "" {
				return errors.New("no slot recorded")
			}
			return nil
		})
		waitRevision(t, c, run, istioNS, "istio-ca", rev+1)
		cacerts := waitCACertsFromSource(t, c, run, istioNS, "istio-ca-tls")
		if cacerts.Annotations[syncer.AnnotationSerial] == before {
			t.Errorf("cacerts still holds serial %s after the renewal", before)
		}
	})
}

func testCSRSigned(ctx context.Context, t *testing.T, c *lab.Cluster, run *running) {
	csrPEM := newCSR(t, "spiffe://"+trustDomain+"/ns/default/sa/csr-test")
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "deploy-e2e", Annotations: map[string]string{"experimental.cert-manager.io/request-duration": "30m"}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: csrPEM, SignerName: vaultcontract.SignerNamePrefix + issuerName,
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	if err := c.Client.Create(ctx, csr); err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2E", Message: "approved by the deploy e2e test",
	})
	if _, err := c.Clientset.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	run.eventually(t, time.Minute, "the CSR's certificate", func(ctx context.Context) error {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(csr), csr); err != nil {
			return err
		}
		if len(csr.Status.Certificate) == 0 {
			return fmt.Errorf("no certificate yet; conditions %+v", csr.Status.Conditions)
		}
		return nil
	})
	block, _ := pem.Decode(csr.Status.Certificate)
	if block == nil {
		t.Fatal("status.certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://"+trustDomain+"/ns/default/sa/csr-test" {
		t.Errorf("signed certificate URIs %v", cert.URIs)
	}
}

// testLeaderElection runs two syncer replicas as the chart's
// ServiceAccount: only the leader writes; when it dies without releasing
// the lease, the other takes over once the lease expires, and a renewal
// after the hand-over reaches cacerts.
func testLeaderElection(ctx context.Context, t *testing.T, c *lab.Cluster) {
	caChain(ctx, t, c, leNS)
	spec := func(name string) managerSpec {
		return managerSpec{
			name: name, syncer: true, watchNamespaces: []string{leNS}, targets: []string{leNS}, allowedIssuers: []string{caChainIssuer},
			leaseDuration: 10 * time.Second, renewDeadline: 8 * time.Second, retryPeriod: 2 * time.Second, kill: true,
		}
	}
	cfg := impersonate(c)
	first := startManager(t, cfg, spec("replica-1"))
	first.eventually(t, time.Minute, "replica-1 elected", func(context.Context) error {
		if !first.elected() {
			return errors.New("not elected")
		}
		return nil
	})
	second := startManager(t, cfg, spec("replica-2"))
	leader := getLease(ctx, t, c)

	waitRevision(t, c, first, leNS, "istio-ca", 1)
	waitCACertsFromSource(t, c, first, leNS, "istio-ca-tls")
	t.Run("only the leader writes", func(t *testing.T) {
		if second.elected() {
			t.Fatal("both replicas are elected")
		}
		if n := second.syncs(t); n != 0 {
			t.Errorf("the follower reconciled %v times", n)
		}
		// cacerts becomes visible before the leader's reconcile returns and
		// counts the sync, so its counter is awaited, not read once.
		first.eventually(t, 30*time.Second, "the leader to count its sync", func(context.Context) error {
			if first.syncs(t) == 0 {
				return errors.New("the leader never reconciled")
			}
			return nil
		})
	})

	// Kill the leader: it stops without releasing the lease, as a crashed
	// pod would.
	first.stop(t)
	last := getLease(ctx, t, c)
	if *last.Spec.HolderIdentity != *leader.Spec.HolderIdentity {
		t.Fatalf("the lease changed hands while replica-1 led: %s", *last.Spec.HolderIdentity)
	}
	second.eventually(t, time.Minute, "replica-2 to take over", func(context.Context) error {
		if !second.elected() {
			return errors.New("not elected")
		}
		return nil
	})
	now := getLease(ctx, t, c)
	t.Run("the lease passed only after it expired", func(t *testing.T) {
		if *now.Spec.HolderIdentity == *leader.Spec.HolderIdentity {
			t.Fatalf("holder still %s", *now.Spec.HolderIdentity)
		}
		expiry := last.Spec.RenewTime.Add(time.Duration(*last.Spec.LeaseDurationSeconds) * time.Second)
		if now.Spec.AcquireTime.Time.Before(expiry) {
			t.Errorf("replica-2 acquired at %s, before replica-1's lease expired at %s", now.Spec.AcquireTime.Time, expiry)
		}
		t.Logf("hand-over %s after the lease expired (lease %ds, retry period 2s)",
			now.Spec.AcquireTime.Time.Sub(expiry).Round(time.Millisecond), *last.Spec.LeaseDurationSeconds)
	})

	t.Run("a renewal after the hand-over reaches cacerts", func(t *testing.T) {
		before := getSecret(ctx, t, c, leNS, "cacerts").Annotations[syncer.AnnotationSerial]
		rev := decision.Revision(getCertificate(ctx, t, c, leNS, "istio-ca"))
		renew(ctx, t, c, leNS, "istio-ca")
		waitRevision(t, c, second, leNS, "istio-ca", rev+1)
		cacerts := waitCACertsFromSource(t, c, second, leNS, "istio-ca-tls")
		if cacerts.Annotations[syncer.AnnotationSerial] == before {
			t.Errorf("cacerts still holds serial %s", before)
		}
		second.eventually(t, 30*time.Second, "the new leader to count its sync", func(context.Context) error {
			if second.syncs(t) == 0 {
				return errors.New("the new leader never reconciled")
			}
			return nil
		})
	})
}

func getLease(ctx context.Context, t *testing.T, c *lab.Cluster) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: app.LeaderElectionID}, l); err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil || l.Spec.AcquireTime == nil || l.Spec.LeaseDurationSeconds == nil {
		t.Fatalf("lease incomplete: %+v", l.Spec)
	}
	return l
}
