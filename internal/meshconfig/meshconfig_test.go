package meshconfig

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, mesh string
		want       TrustDomains
		err        string
	}{
		{"set", "trustDomain: kind2\ntrustDomainAliases: [kind3, kind1]\ndefaultConfig:\n  discoveryAddress: istiod:15012\n", TrustDomains{TrustDomain: "kind2", Aliases: []string{"kind3", "kind1"}}, ""},
		{"unset: istiod's default", "accessLogFile: /dev/stdout\n", TrustDomains{TrustDomain: "cluster.local", Defaulted: true}, ""},
		{"empty", "", TrustDomains{TrustDomain: "cluster.local", Defaulted: true}, ""},
		{"not YAML", "trustDomain: [", TrustDomains{}, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.mesh)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse = %+v, %v; want an error about %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got.TrustDomain != tc.want.TrustDomain || got.Defaulted != tc.want.Defaulted || strings.Join(got.Aliases, ",") != strings.Join(tc.want.Aliases, ",") {
				t.Errorf("Parse = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestMismatch(t *testing.T) {
	if m := (TrustDomains{TrustDomain: "kind2"}).Mismatch("kind2", "istio-system/istio"); m != "" {
		t.Errorf("agreeing trust domain: %q", m)
	}
	m := (TrustDomains{TrustDomain: "wrong.mesh"}).Mismatch("kind2", "istio-system/istio")
	for _, want := range []string{`meshConfig.trustDomain is "wrong.mesh"`, `constrained to "kind2"`, "istio-system/istio"} {
		if !strings.Contains(m, want) {
			t.Errorf("mismatch %q does not say %q", m, want)
		}
	}
	if m := (TrustDomains{TrustDomain: "cluster.local", Defaulted: true}).Mismatch("kind2", "istio-system/istio"); !strings.Contains(m, "istiod's default") {
		t.Errorf("defaulted mismatch %q does not say the trust domain is istiod's default", m)
	}
}

func TestMissingAliases(t *testing.T) {
	td := TrustDomains{TrustDomain: "kind2", Aliases: []string{"kind3"}}
	if got := td.MissingAliases([]string{"kind3", "kind2", "kind1", "kind1"}); strings.Join(got, ",") != "kind1" {
		t.Errorf("MissingAliases = %v, want [kind1]", got)
	}
}
