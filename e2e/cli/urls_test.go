package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// The AIA and CRL URLs bootstrap gives the mount: per issuer, so that every
// certificate names the CRL of the root that signed it, and written only
// when the mount has none or --url-base asks for other ones. TestCLI runs
// these as steps.

const (
	issuingTemplate = "{{cluster_aia_path}}/issuer/{{issuer_id}}/der"
	crlTemplate     = "{{cluster_aia_path}}/issuer/{{issuer_id}}/crl/der"
)

// urlSettings is the mount's config/cluster and config/urls, as JSON, to
// compare before and after a run.
func urlSettings(ctx context.Context, t *testing.T, root *vaultapi.Client, mount string) (cluster, urls map[string]any) {
	t.Helper()
	for path, into := range map[string]*map[string]any{mount + "/config/cluster": &cluster, mount + "/config/urls": &urls} {
		s, err := root.Logical().ReadWithContext(ctx, path)
		if err != nil || s == nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		*into = s.Data
	}
	return cluster, urls
}

// expectPerIssuerURLs checks that the mount holds bootstrap's templates
// under aiaPath.
func expectPerIssuerURLs(ctx context.Context, t *testing.T, root *vaultapi.Client, aiaPath string) {
	t.Helper()
	cluster, urls := urlSettings(ctx, t, root, "pki")
	if cluster["aia_path"] != aiaPath || cluster["path"] != aiaPath {
		t.Errorf("pki/config/cluster is %v, want path and aia_path %s", cluster, aiaPath)
	}
	if urls["enable_templating"] != true || !slices.Equal(stringsOf(urls["issuing_certificates"]), []string{issuingTemplate}) ||
		!slices.Equal(stringsOf(urls["crl_distribution_points"]), []string{crlTemplate}) {
		t.Errorf("pki/config/urls is %v, want the per-issuer templates", urls)
	}
}

// stepMark is the CHANGED/unchanged column of a bootstrap step.
func stepMark(out, step string) string {
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(step) + `\s{2,}(CHANGED|unchanged)\s`).FindStringSubmatch(out)
	if m == nil {
		return "missing"
	}
	return m[1]
}

// urlsKeptAcrossAddresses is the review's case: a second bootstrap through
// another spelling of the same Vault's address must change nothing, while
// --url-base changes the URL base, once.
func urlsKeptAcrossAddresses(ctx context.Context, t *testing.T, c *cli, root *vaultapi.Client, addr string) {
	aiaPath := addr + "/v1/pki"
	expectPerIssuerURLs(ctx, t, root, aiaPath)
	cluster, urls := urlSettings(ctx, t, root, "pki")

	localhost := strings.Replace(addr, "127.0.0.1", "localhost", 1)
	if localhost == addr {
		t.Fatalf("the lab's Vault address %s is not on 127.0.0.1", addr)
	}
	r := c.runEnv(t, map[string]string{"VAULT_ADDR": localhost}, "vault", "bootstrap")
	if r.code != 0 || !strings.Contains(r.stdout, "Nothing changed") || stepMark(r.stdout, "URL base") != "unchanged" || stepMark(r.stdout, "URLs") != "unchanged" {
		t.Errorf("bootstrap through %s: exit %d, want 0 and URL base and URLs unchanged", localhost, r.code)
	}
	if !strings.Contains(r.stdout, aiaPath+"/issuer/") {
		t.Errorf("bootstrap through %s does not say the URLs are under %s", localhost, aiaPath)
	}
	if c2, u2 := urlSettings(ctx, t, root, "pki"); jsonOf(c2) != jsonOf(cluster) || jsonOf(u2) != jsonOf(urls) {
		t.Errorf("bootstrap through %s changed the URL settings: %v %v, were %v %v", localhost, c2, u2, cluster, urls)
	}

	// --url-base given and different: written once, then unchanged.
	const external = "https://vault.example.test:8200"
	for i, want := range []string{"CHANGED", "unchanged"} {
		r := c.run(t, "vault", "bootstrap", "--url-base", external)
		if r.code != 0 || stepMark(r.stdout, "URL base") != want || stepMark(r.stdout, "URLs") != "unchanged" {
			t.Errorf("bootstrap --url-base %s, run %d: exit %d, want URL base %s and URLs unchanged", external, i+1, r.code, want)
		}
	}
	expectPerIssuerURLs(ctx, t, root, external+"/v1/pki")
	// Back to the lab's address, which later steps fetch CRLs from.
	r = c.run(t, "vault", "bootstrap", "--url-base", addr)
	if r.code != 0 || stepMark(r.stdout, "URL base") != "CHANGED" {
		t.Errorf("bootstrap --url-base %s: exit %d, want URL base CHANGED", addr, r.code)
	}
	expectPerIssuerURLs(ctx, t, root, aiaPath)
}

// issuerID is the Vault issuer ID of ref in pki/.
func issuerID(ctx context.Context, t *testing.T, root *vaultapi.Client, ref string) string {
	t.Helper()
	s, err := root.Logical().ReadWithContext(ctx, "pki/issuer/"+ref)
	if err != nil || s == nil {
		t.Fatalf("reading issuer %s: %v", ref, err)
	}
	id, _ := s.Data["issuer_id"].(string)
	return id
}

// expectAdvertises checks that cert names issuer id's own certificate and
// CRL, and that the certificate address serves rootCert.
func expectAdvertises(ctx context.Context, t *testing.T, cert, rootCert *x509.Certificate, aiaPath, id string) {
	t.Helper()
	issuerURL := aiaPath + "/issuer/" + id
	if !slices.Equal(cert.CRLDistributionPoints, []string{issuerURL + "/crl/der"}) {
		t.Errorf("%s: CRL distribution points %v, want %s/crl/der", cert.Subject.CommonName, cert.CRLDistributionPoints, issuerURL)
	}
	if !slices.Equal(cert.IssuingCertificateURL, []string{issuerURL + "/der"}) {
		t.Errorf("%s: issuing certificate URLs %v, want %s/der", cert.Subject.CommonName, cert.IssuingCertificateURL, issuerURL)
	}
	if len(cert.IssuingCertificateURL) == 1 {
		if der := fetch(ctx, t, cert.IssuingCertificateURL[0]); !bytes.Equal(der, rootCert.Raw) {
			t.Errorf("%s does not serve the root that signed %s", cert.IssuingCertificateURL[0], cert.Subject.CommonName)
		}
	}
}

// onAdvertisedCRL says whether cert is on the CRL its own certificate points
// to, and checks that CRL is signed by rootCert.
func onAdvertisedCRL(ctx context.Context, t *testing.T, cert, rootCert *x509.Certificate) bool {
	t.Helper()
	if len(cert.CRLDistributionPoints) != 1 {
		t.Fatalf("%s carries CRL distribution points %v, want one", cert.Subject.CommonName, cert.CRLDistributionPoints)
	}
	crl, err := x509.ParseRevocationList(fetch(ctx, t, cert.CRLDistributionPoints[0]))
	if err != nil {
		t.Fatalf("parsing the CRL at %s: %v", cert.CRLDistributionPoints[0], err)
	}
	if err := crl.CheckSignatureFrom(rootCert); err != nil {
		t.Errorf("the CRL at %s is not the signing root's: %v", cert.CRLDistributionPoints[0], err)
	}
	return slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
		return e.SerialNumber.Cmp(cert.SerialNumber) == 0
	})
}

// fetch GETs url as any relying party would: no token.
func fetch(ctx context.Context, t *testing.T, url string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %v: %s", url, resp.StatusCode, err, fmt.Sprintf("%.200s", body))
	}
	return body
}

// rotatedRootKeepsOldCRL adds a second root and makes it the default, as a
// root rotation does, then signs with east's own token under the old root,
// now not the default: the intermediate must name the old root's CRL, not
// the default's. It returns that intermediate.
func rotatedRootKeepsOldCRL(ctx context.Context, t *testing.T, c *cli, root, east *vaultapi.Client, rootCert *x509.Certificate, aiaPath string) *x509.Certificate {
	r := c.run(t, "vault", "bootstrap", "--issuer-name", "meshtrust-root-2", "--common-name", "meshtrust root CA 2")
	if r.code != 0 || stepMark(r.stdout, "default issuer") != "CHANGED" || stepMark(r.stdout, "URLs") != "unchanged" || stepMark(r.stdout, "URL base") != "unchanged" {
		t.Fatalf("bootstrap of a second root: exit %d, want 0, a new default issuer and the URLs unchanged", r.code)
	}
	oldID, newID := issuerID(ctx, t, root, "meshtrust-root"), issuerID(ctx, t, root, "meshtrust-root-2")
	_, req := csr(t, eastCN)
	cert, err := signIntermediate(ctx, east, signPath, map[string]any{"csr": req, "common_name": eastCN, "permitted_uri_domains": "east.mesh", "max_path_length": "0"})
	if err != nil {
		t.Fatalf("east signing under meshtrust-root after the rotation: %v", err)
	}
	expectAdvertises(ctx, t, cert, rootCert, aiaPath, oldID)
	if strings.Contains(strings.Join(cert.CRLDistributionPoints, " "), newID) {
		t.Errorf("an intermediate of meshtrust-root names the new default root's CRL: %v", cert.CRLDistributionPoints)
	}
	return cert
}
