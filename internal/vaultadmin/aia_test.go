package vaultadmin

import (
	"reflect"
	"strings"
	"testing"
)

func TestPlanAIA(t *testing.T) {
	const (
		addr  = "http://127.0.0.1:8200"
		other = "http://localhost:8200"
		ext   = "https://vault.example.com"
		addrM = addr + "/v1/pki"
		extM  = ext + "/v1/pki"
	)
	ours := func(aia string) aiaConfig {
		return aiaConfig{Path: aia, AIAPath: aia, Issuing: []string{issuingTemplate}, CRL: []string{crlTemplate}, Templating: true}
	}
	legacy := aiaConfig{Issuing: []string{addrM + "/ca"}, CRL: []string{addrM + "/crl"}}
	foreignTemplated := aiaConfig{Issuing: []string{"{{cluster_aia_path}}/ca"}, Templating: true}
	ocspOnly := aiaConfig{Others: []string{"http://ocsp.example"}}

	for _, tc := range []struct {
		name                  string
		cur                   aiaConfig
		urlBase, defaultBase  string
		wantCluster, wantURLs bool
		want                  aiaConfig
		noBase                string
	}{
		{name: "none configured, no flag: the Vault address", cur: aiaConfig{}, defaultBase: addr,
			wantCluster: true, wantURLs: true, want: ours(addrM)},
		{name: "none configured, flag", cur: aiaConfig{}, urlBase: ext, defaultBase: addr,
			wantCluster: true, wantURLs: true, want: ours(extM)},
		{name: "none configured, flag with trailing slash", cur: aiaConfig{}, urlBase: ext + "/", defaultBase: addr,
			wantCluster: true, wantURLs: true, want: ours(extM)},
		{name: "OCSP only counts as none", cur: ocspOnly, defaultBase: addr,
			wantCluster: true, wantURLs: true, want: aiaConfig{Path: addrM, AIAPath: addrM, Issuing: []string{issuingTemplate}, CRL: []string{crlTemplate}, Others: ocspOnly.Others, Templating: true}},
		{name: "same, no flag", cur: ours(addrM), defaultBase: addr, want: ours(addrM)},
		{name: "same, flag", cur: ours(extM), urlBase: ext, defaultBase: addr, want: ours(extM)},
		{name: "different Vault address spelling, no flag", cur: ours(addrM), defaultBase: other, want: ours(addrM)},
		{name: "different, flag", cur: ours(addrM), urlBase: ext, defaultBase: addr,
			wantCluster: true, want: ours(extM)},
		{name: "flag differs in path only", cur: aiaConfig{Path: "http://p/v1/pki", AIAPath: extM, Issuing: []string{issuingTemplate}, CRL: []string{crlTemplate}, Templating: true},
			urlBase: ext, defaultBase: addr, wantCluster: true, want: ours(extM)},
		{name: "legacy URLs, no flag: kept", cur: legacy, defaultBase: other, want: legacy},
		{name: "legacy URLs, flag: per issuer", cur: legacy, urlBase: ext, defaultBase: addr,
			wantCluster: true, wantURLs: true, want: ours(extM)},
		{name: "templates without aia_path, no flag: aia_path filled", cur: foreignTemplated, defaultBase: addr,
			wantCluster: true, want: aiaConfig{Path: addrM, AIAPath: addrM, Issuing: foreignTemplated.Issuing, Templating: true}},
		{name: "URLs none, aia_path kept from an earlier --url-base", cur: aiaConfig{Path: extM, AIAPath: extM}, defaultBase: addr,
			wantURLs: true, want: ours(extM)},
		{name: "URLs none, path only: aia_path follows it", cur: aiaConfig{Path: extM}, defaultBase: addr,
			wantCluster: true, wantURLs: true, want: ours(extM)},
		{name: "none configured, no address", cur: aiaConfig{}, want: aiaConfig{}, noBase: "no Vault address"},
		{name: "none configured, unix socket address", cur: aiaConfig{}, defaultBase: "unix:///run/vault.sock", want: aiaConfig{}, noBase: "cannot stand in"},
		{name: "configured, no address needed", cur: ours(addrM), want: ours(addrM)},
		{name: "templates without aia_path, no address", cur: foreignTemplated, want: foreignTemplated, noBase: "no Vault address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := planAIA(tc.cur, "pki", tc.urlBase, tc.defaultBase)
			if p.Cluster != tc.wantCluster || p.URLs != tc.wantURLs {
				t.Errorf("writes config/cluster %v, config/urls %v; want %v, %v", p.Cluster, p.URLs, tc.wantCluster, tc.wantURLs)
			}
			if !reflect.DeepEqual(p.Final, tc.want) {
				t.Errorf("ends with %+v, want %+v", p.Final, tc.want)
			}
			if tc.noBase == "" && p.NoBase != "" || !strings.Contains(p.NoBase, tc.noBase) {
				t.Errorf("NoBase %q, want %q", p.NoBase, tc.noBase)
			}
			// What a second run with the same inputs sees: nothing to do.
			if again := planAIA(p.Final, "pki", tc.urlBase, tc.defaultBase); again.Cluster || again.URLs {
				t.Errorf("a second run would write again: config/cluster %v, config/urls %v", again.Cluster, again.URLs)
			}
		})
	}
}

func TestAIAResolve(t *testing.T) {
	a := aiaConfig{Path: "http://p/v1/pki", AIAPath: "http://a/v1/pki", Templating: true}
	if got, want := a.resolve(crlTemplate, "id-1"), "http://a/v1/pki/issuer/id-1/crl/der"; got != want {
		t.Errorf("CRL: got %s, want %s", got, want)
	}
	if got, want := a.resolve("{{cluster_path}}/ocsp", "id-1"), "http://p/v1/pki/ocsp"; got != want {
		t.Errorf("OCSP: got %s, want %s", got, want)
	}
	a.Templating = false
	if got := a.resolve(crlTemplate, "id-1"); got != crlTemplate {
		t.Errorf("without templating Vault writes the URL as is, got %s", got)
	}
}

func TestCheckURLBase(t *testing.T) {
	for base, ok := range map[string]bool{
		"https://vault.example.com:8200":  true,
		"http://127.0.0.1:8200/":          true,
		"https://example.com/vault":       true,
		"vault.example.com:8200":          false,
		"ftp://vault.example.com":         false,
		"https://":                        false,
		"https://u:p@vault.example.com":   false,
		"https://vault.example.com/?x=1":  false,
		"https://vault.example.com/#frag": false,
		"https://{{cluster_path}}":        false,
		"unix:///run/vault.sock":          false,
	} {
		if err := checkURLBase(base); (err == nil) != ok {
			t.Errorf("checkURLBase(%q) = %v, want ok=%v", base, err, ok)
		}
	}
}
