package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	vaultapi "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/e2e/lab"
	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/issuer/api/v1alpha1"
)

const (
	eastCN = "east istio intermediate CA"
	westCN = "west istio intermediate CA"
	// signPath is what enroll's policy allows, with the default --issuer-ref.
	signPath = "pki/issuer/meshtrust-root/sign-intermediate"
)

// TestCLI walks the CLI's whole story against one lab: bootstrap, enrol two
// clusters (kubernetes auth and AppRole), prove each policy with the
// cluster's own credentials, check status healthy and broken, unenrol with
// revocation, and the error paths. The steps share state, so they run in
// order and stop at the first failure.
func TestCLI(t *testing.T) {
	l := lab.New(t, lab.Options{Clusters: []string{"east", "west"}, NoCertManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	east, west := l.Cluster("east"), l.Cluster("west")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := lab.WriteKubeconfig(kubeconfig, map[string]*rest.Config{"east": east.Config, "west": west.Config}, "east"); err != nil {
		t.Fatal(err)
	}
	c := &cli{env: map[string]string{
		"VAULT_ADDR":  l.Vault.Addr,
		"VAULT_TOKEN": l.Vault.RootToken,
		"KUBECONFIG":  kubeconfig,
		"HOME":        t.TempDir(),
	}}
	root, err := l.Vault.Client()
	if err != nil {
		t.Fatal(err)
	}
	var rootFingerprint string
	aiaPath := l.Vault.Addr + "/v1/pki"
	var rootPEM string
	secretsSeen := []string{l.Vault.RootToken}

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("bootstrap", func(t *testing.T) {
		r := c.run(t, "vault", "bootstrap")
		if r.code != 0 || !strings.Contains(r.stdout, "Bootstrapped") {
			t.Fatalf("first bootstrap: exit %d", r.code)
		}
		s, err := root.Logical().ReadWithContext(ctx, "pki/issuer/meshtrust-root")
		if err != nil || s == nil {
			t.Fatalf("root issuer not in Vault: %v", err)
		}
		rootPEM, _ = s.Data["certificate"].(string)
		certs, err := pki.DecodeCertificates([]byte(rootPEM), pki.MaxChainPEMSize)
		if err != nil {
			t.Fatal(err)
		}
		rc := certs[0]
		rootFingerprint = pki.Fingerprint(rc)
		if !strings.Contains(r.stdout, rootFingerprint) || !strings.Contains(r.stdout, rc.NotAfter.UTC().Format(time.RFC3339)) {
			t.Errorf("output lacks the root's fingerprint %s or expiry", rootFingerprint)
		}
		if !strings.Contains(r.stdout, "ECDSA P-256") || rc.PublicKeyAlgorithm.String() != "ECDSA" || !pki.IsSelfSigned(rc) {
			t.Errorf("root is not a self-signed EC P-256 CA: %s", rc.PublicKeyAlgorithm)
		}
		if ttl := rc.NotAfter.Sub(rc.NotBefore); ttl < 87000*time.Hour {
			t.Errorf("root lives %s, want about 87600h: it must be generated under the high TTL", ttl)
		}
		// The key was generated inside Vault: the response never carried it.
		if _, ok := s.Data["private_key"]; ok {
			t.Error("Vault returned the root's private key")
		}
		cfg, err := root.Sys().MountConfigWithContext(ctx, "pki")
		if err != nil || cfg.MaxLeaseTTL != int((2160*time.Hour).Seconds()) {
			t.Errorf("max lease TTL = %v (%v), want 2160h", cfg, err)
		}
		// A mount with no URLs gets per-issuer ones under VAULT_ADDR.
		expectPerIssuerURLs(ctx, t, root, aiaPath)

		again := c.run(t, "vault", "bootstrap")
		if again.code != 0 || !strings.Contains(again.stdout, "Nothing changed") || strings.Contains(again.stdout, "CHANGED") ||
			!strings.Contains(again.stdout, rootFingerprint) {
			t.Errorf("second bootstrap changed something or lost the root")
		}
		j := c.run(t, "vault", "bootstrap", "-o", "json")
		var res struct {
			Changed bool
			Root    struct{ FingerprintSHA256 string }
		}
		if err := json.Unmarshal([]byte(j.stdout), &res); err != nil || res.Changed || res.Root.FingerprintSHA256 != rootFingerprint {
			t.Errorf("json bootstrap: %v %+v", err, res)
		}
	})

	step("bootstrap keeps the URLs whatever the Vault address spelling", func(t *testing.T) {
		urlsKeptAcrossAddresses(ctx, t, c, root, l.Vault.Addr)
	})

	step("a failed root generation restores the max TTL", func(t *testing.T) {
		failedGenerationKeepsMaxTTL(ctx, t, c, root)
	})

	step("import and adopt an existing root", func(t *testing.T) {
		imported := selfSignedRoot(t, "imported root")
		rootCert := imported.Cert
		bundle := append(pki.EncodeCertificates(rootCert), keyPEM(t, imported.Key)...)
		file := filepath.Join(t.TempDir(), "root.pem")
		if err := os.WriteFile(file, bundle, 0o600); err != nil {
			t.Fatal(err)
		}
		r := c.run(t, "vault", "bootstrap", "--mount", "pki-imported", "--issuer-name", "imported-root", "--import-pem", file)
		if r.code != 0 || !strings.Contains(r.stdout, pki.Fingerprint(rootCert)) || !strings.Contains(r.stdout, "imported root") {
			t.Fatalf("import: exit %d", r.code)
		}
		r = c.run(t, "vault", "bootstrap", "--mount", "pki-imported", "--issuer-name", "imported-root", "--import-pem", file)
		if r.code != 0 || !strings.Contains(r.stdout, "Nothing changed") {
			t.Errorf("second import changed something")
		}
		importNeverRenames(ctx, t, c, root, file)
		r = c.run(t, "vault", "bootstrap", "--mount", "pki-imported", "--adopt-issuer", "imported-root")
		if r.code != 0 || !strings.Contains(r.stdout, "adopted existing issuer") || !strings.Contains(r.stdout, "Nothing changed") {
			t.Errorf("adopt: exit %d", r.code)
		}
		r = c.run(t, "vault", "bootstrap", "--mount", "pki-imported", "--adopt-issuer", "no-such-issuer")
		if r.code != 2 || !strings.Contains(r.stderr, "no-such-issuer") {
			t.Errorf("adopting a missing issuer: exit %d %q", r.code, r.stderr)
		}
	})

	step("max TTL caps every intermediate", func(t *testing.T) {
		_, req := csr(t, "cap check")
		cert, err := signIntermediate(ctx, root, signPath, map[string]any{"csr": req, "common_name": "cap check", "ttl": "87600h"})
		if err != nil {
			t.Fatal(err)
		}
		if life := cert.NotAfter.Sub(cert.NotBefore); life > 2161*time.Hour {
			t.Errorf("asked for 87600h, got %s: the mount does not cap intermediates", life)
		}
	})

	var eastToken string
	step("enroll east with kubernetes auth", func(t *testing.T) {
		r := c.run(t, "vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--context", "east")
		if r.code != 0 {
			t.Fatalf("enroll: exit %d", r.code)
		}
		docs := strings.Split(r.stdout, "---\n")
		var vci v1alpha1.VaultClusterIssuer
		if len(docs) != 2 || yaml.UnmarshalStrict([]byte(docs[0]), &vci) != nil {
			t.Fatalf("stdout is not the issuer and certificate YAML")
		}
		if vci.Spec.Server != l.Vault.Addr || vci.Spec.Intermediate.TrustDomain != "east.mesh" || vci.Spec.Auth.Kubernetes.MountPath != "kubernetes-east" {
			t.Errorf("issuer spec: %+v", vci.Spec)
		}
		// Ready to apply: the API server accepts both objects against the
		// installed CRDs (dry run, so nothing acts on them).
		if err := east.EnsureNamespace(ctx, "istio-system"); err != nil {
			t.Fatal(err)
		}
		for _, doc := range docs {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				t.Fatal(err)
			}
			if err := east.Client.Create(ctx, obj, client.DryRunAll); err != nil {
				t.Errorf("the API server refuses the printed %s: %v", obj.GetKind(), err)
			}
		}
		again := c.run(t, "vault", "enroll", "--cluster", "east", "--trust-domain", "east.mesh", "--context", "east")
		if again.code != 0 || !strings.Contains(again.stderr, "Nothing changed") || strings.Contains(again.stderr, "CHANGED") || again.stdout != r.stdout {
			t.Errorf("second enroll changed something")
		}
		// Log in as the controller would: its ServiceAccount's projected token.
		jwt, err := east.ServiceAccountToken(ctx, "meshtrust-system", "meshtrust-controller", []string{"vault://meshtrust-vault"}, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		secretsSeen = append(secretsSeen, jwt)
		s, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes-east/login", map[string]any{"role": "meshtrust-east", "jwt": jwt})
		if err != nil {
			t.Fatalf("controller cannot log in: %v", err)
		}
		eastToken = s.Auth.ClientToken
		secretsSeen = append(secretsSeen, eastToken)
		if !slices.Contains(s.Auth.TokenPolicies, "meshtrust-east") {
			t.Errorf("token policies %v", s.Auth.TokenPolicies)
		}
		// A ServiceAccount the role is not bound to is refused.
		other, err := east.ServiceAccountToken(ctx, "default", "default", []string{"vault://meshtrust-vault"}, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes-east/login", map[string]any{"role": "meshtrust-east", "jwt": other}); err == nil {
			t.Error("another ServiceAccount logged in")
		}
	})

	// Not a step: it shows why enroll stores a reviewer token.
	t.Run("without a reviewer token Vault accepts only tokens the API server does", func(t *testing.T) {
		clientJWTNeedsAPIServerTokens(ctx, t, east, root)
	})

	step("enroll refuses a mount that is not the cluster's", func(t *testing.T) {
		enrollRefusesForeignMounts(ctx, t, c, root, east.Host)
	})

	var eastInter, westInter *signed
	step("east's policy pins its trust domain", func(t *testing.T) {
		vc := clientWithToken(t, l.Vault.Addr, eastToken)
		eastInter = provePinning(ctx, t, vc, eastCN, "east.mesh", "west.mesh", rootPEM)
		expectAdvertises(ctx, t, eastInter.cert, eastInter.root, aiaPath, issuerID(ctx, t, root, "meshtrust-root"))
	})

	// Not a step: a failure here is the issuer's to fix, and the CLI's own
	// story goes on.
	t.Run("the issuer's request passes east's policy", func(t *testing.T) {
		issuerRequestPasses(ctx, t, clientWithToken(t, l.Vault.Addr, eastToken), eastCN, "east.mesh")
	})

	var westSecretID string
	var westLogin map[string]any
	step("enroll west with AppRole", func(t *testing.T) {
		r := c.run(t, "vault", "enroll", "--cluster", "west", "--trust-domain", "west.mesh", "--auth", "approle", "--context", "west")
		if r.code != 0 {
			t.Fatalf("enroll: exit %d", r.code)
		}
		s, err := west.Clientset.CoreV1().Secrets("meshtrust-system").Get(ctx, "meshtrust-vault-approle", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("secret ID Secret: %v", err)
		}
		westSecretID = string(s.Data["secret-id"])
		secretsSeen = append(secretsSeen, westSecretID)
		var vci v1alpha1.VaultClusterIssuer
		if err := yaml.Unmarshal([]byte(strings.Split(r.stdout, "---\n")[0]), &vci); err != nil || vci.Spec.Auth.AppRole == nil {
			t.Fatalf("issuer YAML: %v", err)
		}
		roleID := vci.Spec.Auth.AppRole.RoleID
		again := c.run(t, "vault", "enroll", "--cluster", "west", "--trust-domain", "west.mesh", "--auth", "approle", "--context", "west")
		if again.code != 0 || !strings.Contains(again.stderr, "Nothing changed") {
			t.Errorf("second enroll changed something")
		}
		login, err := root.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": westSecretID})
		if err != nil {
			t.Fatalf("AppRole login: %v", err)
		}
		secretsSeen = append(secretsSeen, login.Auth.ClientToken)
		vc := clientWithToken(t, l.Vault.Addr, login.Auth.ClientToken)
		westInter = provePinning(ctx, t, vc, westCN, "west.mesh", "east.mesh", rootPEM)
		westLogin = map[string]any{"role_id": roleID, "secret_id": westSecretID}
	})

	step("enroll refuses a trust domain that overlaps an enrolled one", func(t *testing.T) {
		enrollRefusesOverlaps(ctx, t, c, root)
	})

	step("an AppRole secret ID file is kept, 0600", func(t *testing.T) {
		secretsSeen = append(secretsSeen, secretIDFileKept(ctx, t, c, root)...)
	})

	step("status healthy", func(t *testing.T) {
		// east's cacerts looks as the syncer writes it, from a Ready Certificate.
		crt := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ca", Annotations: map[string]string{"meshtrust.io/istio-cacerts": "true"}},
			Spec: cmapi.CertificateSpec{IsCA: true, CommonName: eastCN, SecretName: "meshtrust-istio-ca",
				IssuerRef: cmmeta.IssuerReference{Group: "meshtrust.io", Kind: "VaultClusterIssuer", Name: "meshtrust-vault"}},
		}
		if err := east.Client.Create(ctx, crt); err != nil {
			t.Fatal(err)
		}
		crt.Status.Conditions = []cmapi.CertificateCondition{{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, Reason: "Ready"}}
		if err := east.Client.Status().Update(ctx, crt); err != nil {
			t.Fatal(err)
		}
		putCacerts(ctx, t, east.Clientset, istioData(t, eastInter.cert, eastInter.key, eastInter.root), "istio-system/istio-ca")
		putCacerts(ctx, t, west.Clientset, tlsData(t, westInter.cert, westInter.key, westInter.root))
		exportDir := t.TempDir()
		stale := staleExport(t, exportDir)
		// With VAULT_ADDR, status compares each cluster's ca-crl.pem with
		// Vault's CRLs (no token needed); these hand-written cacerts carry
		// none, which it says. Without it, they are healthy.
		withVault := c.runEnv(t, map[string]string{"VAULT_TOKEN": ""}, "status", "--context", "east", "--context", "west")
		if withVault.code != 1 || !strings.Contains(withVault.stdout, "east: cacerts carries no ca-crl.pem, so revocations do not reach its proxies") ||
			!strings.Contains(withVault.stdout, "west: the tls layout cannot carry a CRL") {
			t.Errorf("status with Vault's CRLs: exit %d; want 1 and a warning for each cluster that carries none", withVault.code)
		}
		r := c.runEnv(t, withoutVault, "status", "--context", "east", "--context", "west", "--export", exportDir)
		if r.code != 0 || !strings.Contains(r.stdout, "HEALTHY") {
			t.Fatalf("status: exit %d", r.code)
		}
		if !regexp.MustCompile(`(?m)^east\s+present\s+yes\s+istio\s+east\.mesh\s+\S+\s+valid\s+True\s+missing\s+-\s+-\s+-\s*$`).MatchString(r.stdout) ||
			!strings.Contains(r.stdout, "Certificate istio-system/istio-ca Ready=True") {
			t.Errorf("east's row does not show a managed cacerts from a Ready Certificate")
		}
		for _, want := range []string{rootFingerprint, "east.mesh", "west.mesh", "istio", "tls", eastInter.cert.NotAfter.UTC().Format(time.RFC3339)} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q", want)
			}
		}
		if matrix := regexp.MustCompile(`(?m)^(east|west)\s+yes\s+yes\s*$`).FindAllString(r.stdout, -1); len(matrix) != 2 {
			t.Errorf("trust matrix is not all yes")
		}
		for _, f := range []string{"east/ca-cert.pem", "east/ca-key.pem", "east/cert-chain.pem", "east/root-cert.pem", "west/tls.crt", "west/ca.crt"} {
			fi, err := os.Stat(filepath.Join(exportDir, f))
			if err != nil {
				t.Errorf("export: %v", err)
			} else if fi.Mode().Perm() != 0o600 {
				t.Errorf("export: %s has mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
		for _, f := range stale {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("export left %s of an earlier layout", f)
			}
		}
		j := c.runEnv(t, withoutVault, "status", "--context", "east", "--context", "west", "-o", "json")
		var rep struct {
			Healthy  bool
			Clusters []struct{ RootFingerprints []string }
		}
		if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil || !rep.Healthy || len(rep.Clusters) != 2 || rep.Clusters[1].RootFingerprints[0] != rootFingerprint {
			t.Errorf("json status: %v %+v", err, rep)
		}
	})

	step("status checks Istio's trust-domain settings", func(t *testing.T) {
		statusChecksIstioMesh(ctx, t, c, east, west)
	})

	step("the reviewer token never lapses silently: its expiry is shown, warned of and renewed", func(t *testing.T) {
		reviewerTokenNeverLapsesSilently(ctx, t, c, east, root)
	})

	step("status with a mismatched root names the cluster", func(t *testing.T) {
		rogueRoot, rogueInter := testCA(t, "west.mesh")
		putCacerts(ctx, t, west.Clientset, istioData(t, rogueInter.Cert, rogueInter.Key, rogueRoot.Cert))
		r := c.run(t, "status", "--context", "east", "--context", "west")
		if r.code != 1 {
			t.Errorf("exit %d, want 1", r.code)
		}
		if !strings.Contains(r.stderr, "UNHEALTHY") || !strings.Contains(r.stderr, "west") {
			t.Errorf("the verdict does not name west: %q", r.stderr)
		}
		if !strings.Contains(r.stdout, "roots differ") || !strings.Contains(r.stdout, "intermediate does not chain to any root of east") {
			t.Errorf("no mismatch explanation")
		}
		// Given the root bootstrap printed, only the cluster at fault is named.
		r = c.run(t, "status", "--context", "east", "--context", "west", "--expect-root", rootFingerprint)
		if r.code != 1 || strings.TrimSpace(r.stderr) != "meshtrust: UNHEALTHY: west" || !strings.Contains(r.stdout, "holds none of the expected roots") {
			t.Errorf("with --expect-root: exit %d, stderr %q; want 1 naming west only", r.code, r.stderr)
		}
		putCacerts(ctx, t, west.Clientset, map[string][]byte{pki.CACertKey: []byte("garbage"), pki.CAKeyKey: {0xff, 0x00}, pki.RootCertKey: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")})
		r = c.run(t, "status", "--context", "east", "--context", "west")
		if r.code != 1 || !strings.Contains(r.stdout, "BROKEN") || !strings.Contains(r.stderr, "west") {
			t.Errorf("garbage cacerts: exit %d, want 1 with west BROKEN", r.code)
		}
	})

	step("status names overlapping trust domains", func(t *testing.T) {
		statusNamesOverlaps(ctx, t, c, west.Clientset)
	})

	// The reviewer's case: after a rotation, an intermediate of the old root
	// is revoked; it must be on the CRL its certificate points to.
	var rotatedInter *x509.Certificate
	step("after a root rotation intermediates still name their own root's CRL", func(t *testing.T) {
		rotatedInter = rotatedRootKeepsOldCRL(ctx, t, c, root, clientWithToken(t, l.Vault.Addr, eastToken), eastInter.root, aiaPath)
	})

	step("unenroll refuses when it cannot search every auth mount", func(t *testing.T) {
		secretsSeen = append(secretsSeen, unenrollRefusesWhatItCannotSearch(ctx, t, c, root, westLogin))
	})

	step("unenroll finds an AppRole enrolment without being told", func(t *testing.T) {
		unenrollFindsAppRole(ctx, t, c, root, westLogin)
	})

	step("unenroll east with --revoke", func(t *testing.T) {
		if !hasCRLEntry(ctx, t, root, "east.mesh") {
			t.Fatal("enroll made no CRL exchange entry for east")
		}
		// No --trust-domain: east's policy names it, for the revocation and
		// for the CRL exchange entry.
		r := c.run(t, "vault", "unenroll", "--cluster", "east", "--revoke")
		if r.code != 0 {
			t.Fatalf("unenroll: exit %d", r.code)
		}
		if hasCRLEntry(ctx, t, root, "east.mesh") {
			t.Error("unenroll --revoke left east's CRL exchange entry")
		}
		if !strings.Contains(r.stdout, "Vault's CRLs:") {
			t.Error("unenroll --revoke did not report Vault's new CRL")
		}
		serial := pki.FormatSerial(eastInter.cert.SerialNumber)
		if !strings.Contains(r.stdout, serial) {
			t.Errorf("east's intermediate %s not revoked", serial)
		}
		s, err := root.Logical().ReadWithContext(ctx, "pki/cert/"+serial)
		if err != nil || s == nil || jsonOf(s.Data["revocation_time"]) == "0" {
			t.Errorf("intermediate not revoked in Vault: %v", err)
		}
		// Where a relying party looks: the address in the certificate, not
		// pki/crl, which is now the new default root's CRL.
		for _, cert := range []*x509.Certificate{eastInter.cert, rotatedInter} {
			if !strings.Contains(r.stdout, pki.FormatSerial(cert.SerialNumber)) {
				t.Errorf("east's intermediate %s not revoked", pki.FormatSerial(cert.SerialNumber))
			}
			if !onAdvertisedCRL(ctx, t, cert, eastInter.root) {
				t.Errorf("revoked intermediate %s is not on the CRL its certificate names, %v", pki.FormatSerial(cert.SerialNumber), cert.CRLDistributionPoints)
			}
		}
		// west's intermediate is left alone.
		if s, _ := root.Logical().ReadWithContext(ctx, "pki/cert/"+pki.FormatSerial(westInter.cert.SerialNumber)); s == nil || jsonOf(s.Data["revocation_time"]) != "0" {
			t.Errorf("west's intermediate was revoked too")
		}
		// east's token died with its auth mount, and the policy is gone.
		vc := clientWithToken(t, l.Vault.Addr, eastToken)
		_, req := csr(t, eastCN)
		if _, err := signIntermediate(ctx, vc, signPath, map[string]any{"csr": req, "common_name": eastCN, "permitted_uri_domains": "east.mesh", "max_path_length": "0"}); err == nil {
			t.Error("east can still sign after unenroll")
		}
		again := c.run(t, "vault", "unenroll", "--cluster", "east")
		if again.code != 0 || !strings.Contains(again.stdout, "Nothing changed") {
			t.Errorf("second unenroll changed something")
		}
	})

	step("wrong token", func(t *testing.T) {
		const bogus = "hvs.bogus-token-that-must-not-be-printed"
		r := c.runEnv(t, map[string]string{"VAULT_TOKEN": bogus}, "vault", "bootstrap")
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 ||
			!strings.Contains(r.stderr, "vault at "+l.Vault.Addr) || !strings.Contains(r.stderr, "token rejected") {
			t.Errorf("want one line naming the address and the rejected token, got exit %d %q", r.code, r.stderr)
		}
		secretsSeen = append(secretsSeen, bogus)
	})

	step("secrets never printed", func(t *testing.T) {
		// Reviewer and ServiceAccount tokens are JWTs; none may be printed.
		if found := leaks(c.printed(), secretsSeen...); len(found) > 0 {
			t.Errorf("CLI output contains %s", strings.Join(found, ", "))
		}
	})

	// Last: sealing a dev-mode Vault is for good.
	step("sealed", func(t *testing.T) {
		if err := root.Sys().SealWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		r := c.run(t, "vault", "bootstrap")
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 ||
			!strings.Contains(r.stderr, "vault at "+l.Vault.Addr) || !strings.Contains(r.stderr, "sealed") {
			t.Errorf("want one line naming the address and 'sealed', got exit %d %q", r.code, r.stderr)
		}
	})
}

func clientWithToken(t *testing.T, addr, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	vc, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vc.SetToken(token)
	return vc
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}
