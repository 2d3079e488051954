package issuer

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
	"github.com/meshtrust/meshtrust/issuer/vault"
)

func decodeAll(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	certs, err := pki.DecodeCertificates(b, pki.MaxChainPEMSize)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func TestSplitResponse(t *testing.T) {
	now := pkitest.RandomNow(t)
	start := now.Add(-time.Hour)
	root := newCert(t, "root", true, pkitest.ECKey(t), nil, start, 24*time.Hour)
	newRoot := newCert(t, "root 2", true, pkitest.ECKey(t), nil, start.Add(time.Minute), 48*time.Hour)
	expiredRoot := newCert(t, "old root", true, pkitest.ECKey(t), nil, start.Add(-72*time.Hour), time.Hour)
	vaultInt := newCert(t, "vault intermediate", true, pkitest.ECKey(t), root, start, 12*time.Hour)
	issued := newCert(t, "east.mesh", true, pkitest.ECKey(t), root, start, 2*time.Hour)
	issuedByInt := newCert(t, "east.mesh", true, pkitest.ECKey(t), vaultInt, start, 2*time.Hour)
	stranger := newCert(t, "stranger", true, pkitest.ECKey(t), nil, start, 24*time.Hour)
	byStranger := newCert(t, "east.mesh", true, pkitest.ECKey(t), stranger, start, 2*time.Hour)

	tests := []struct {
		name      string
		resp      vault.SignResponse
		anchors   []*x509.Certificate
		wantChain []*x509.Certificate
		wantRoots []*x509.Certificate
		wantErr   string
	}{
		{
			name:      "root-signed, root in ca_chain",
			resp:      vault.SignResponse{Certificate: issued.Cert, CAChain: []*x509.Certificate{root.Cert}},
			wantChain: []*x509.Certificate{issued.Cert}, wantRoots: []*x509.Certificate{root.Cert},
		},
		{
			name:      "intermediate issuer, root missing from ca_chain: fetched from the mount",
			resp:      vault.SignResponse{Certificate: issuedByInt.Cert, CAChain: []*x509.Certificate{vaultInt.Cert}},
			anchors:   []*x509.Certificate{root.Cert},
			wantChain: []*x509.Certificate{issuedByInt.Cert, vaultInt.Cert}, wantRoots: []*x509.Certificate{root.Cert},
		},
		{
			name:      "rotation: signing root first, then every other live root, never an expired one",
			resp:      vault.SignResponse{Certificate: issued.Cert, CAChain: []*x509.Certificate{root.Cert}},
			anchors:   []*x509.Certificate{newRoot.Cert, root.Cert, expiredRoot.Cert},
			wantChain: []*x509.Certificate{issued.Cert}, wantRoots: []*x509.Certificate{root.Cert, newRoot.Cert},
		},
		{
			name:    "no root known anywhere",
			resp:    vault.SignResponse{Certificate: issuedByInt.Cert, CAChain: []*x509.Certificate{vaultInt.Cert}},
			wantErr: "no live self-signed root",
		},
		{
			name:    "chain does not verify to any root",
			resp:    vault.SignResponse{Certificate: byStranger.Cert},
			anchors: []*x509.Certificate{root.Cert},
			wantErr: "does not chain to any",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := SplitResponse(&tc.resp, tc.anchors, now)
			if tc.wantErr != "" {
				checkErr(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertCerts(t, "tls.crt", decodeAll(t, b.ChainPEM), tc.wantChain)
			assertCerts(t, "ca.crt", decodeAll(t, b.CAPEM), tc.wantRoots)
			for _, c := range decodeAll(t, b.CAPEM) {
				if !pki.IsSelfSigned(c) {
					t.Errorf("ca.crt holds %q, which is not a root", c.Subject.CommonName)
				}
			}
		})
	}
}

func assertCerts(t *testing.T, what string, got, want []*x509.Certificate) {
	t.Helper()
	names := func(cs []*x509.Certificate) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.Subject.CommonName)
		}
		return strings.Join(s, ", ")
	}
	if len(got) != len(want) {
		t.Fatalf("%s = [%s], want [%s]", what, names(got), names(want))
	}
	for i := range got {
		if !got[i].Equal(want[i]) {
			t.Fatalf("%s = [%s], want [%s]", what, names(got), names(want))
		}
	}
}

func TestPublicKeyMatches(t *testing.T) {
	key := pkitest.ECKey(t)
	csr, err := ParseCSR(pkitest.URICSR(t, key, "x"))
	if err != nil {
		t.Fatal(err)
	}
	now := pkitest.RandomNow(t)
	same := newCert(t, "x", false, key, nil, now, time.Hour)
	other := newCert(t, "x", false, pkitest.ECKey(t), nil, now, time.Hour)
	if !PublicKeyMatches(same.Cert, csr) {
		t.Error("the CSR's own key does not match")
	}
	if PublicKeyMatches(other.Cert, csr) {
		t.Error("another key matches")
	}
}

func TestTruncation(t *testing.T) {
	now := pkitest.RandomNow(t)
	// Vault backdates NotBefore by 30s, so a full grant is TTL+30s.
	backdated := now.Add(-30 * time.Second)
	tests := []struct {
		name      string
		life      time.Duration
		requested time.Duration
		want      bool
	}{
		{name: "full lifetime", life: 2*time.Hour + 30*time.Second, requested: 2 * time.Hour},
		{name: "just under a minute short", life: 2*time.Hour - 59*time.Second, requested: 2 * time.Hour},
		{name: "capped at max_ttl", life: time.Hour + 30*time.Second, requested: 2 * time.Hour, want: true},
		{name: "no duration requested", life: time.Hour, requested: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCert(t, "x", false, pkitest.ECKey(t), nil, backdated, tc.life)
			granted, got := Truncation(c.Cert, tc.requested)
			if got != tc.want || granted != tc.life {
				t.Fatalf("Truncation = (%s, %v), want (%s, %v)", granted, got, tc.life, tc.want)
			}
		})
	}
}

func TestCheckIssued(t *testing.T) {
	key := pkitest.ECKey(t)
	issued := func(tmpl x509.Certificate) *x509.Certificate {
		tmpl.SerialNumber = big.NewInt(1)
		tmpl.NotBefore, tmpl.NotAfter = time.Unix(0, 0), time.Unix(3600, 0)
		return pkitest.Create(t, &tmpl, &tmpl, key.Public(), key)
	}
	constrained := x509.Certificate{BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
		PermittedURIDomains: []string{"east.mesh"}, PermittedDNSDomainsCritical: true}
	caReq := vaultcontract.SignRequest{CA: true, PermittedURIDomains: []string{"east.mesh"}}
	with := func(edit func(*x509.Certificate)) x509.Certificate {
		c := constrained
		edit(&c)
		return c
	}
	tests := []struct {
		name    string
		cert    x509.Certificate
		req     vaultcontract.SignRequest
		wantErr string
	}{
		{name: "what was asked", cert: constrained, req: caReq},
		{name: "path length 1 when asked", cert: with(func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 1, false }),
			req: vaultcontract.SignRequest{CA: true, MaxPathLength: 1, PermittedURIDomains: []string{"east.mesh"}}},
		{name: "leaf for a leaf request", cert: x509.Certificate{}, req: vaultcontract.SignRequest{Role: "workload"}},
		{name: "CA for a leaf request", cert: constrained, req: vaultcontract.SignRequest{Role: "workload"}, wantErr: "CA certificate for a leaf request"},
		{name: "not a CA", cert: with(func(c *x509.Certificate) { c.IsCA, c.MaxPathLenZero = false, false }), req: caReq, wantErr: "not a CA"},
		{name: "no path length", cert: with(func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = -1, false }), req: caReq, wantErr: "path length unlimited, not the 0"},
		{name: "no name constraint", cert: with(func(c *x509.Certificate) { c.PermittedURIDomains, c.PermittedDNSDomainsCritical = nil, false }), req: caReq, wantErr: `permitted URI domains are [], not ["east.mesh"]`},
		{name: "another trust domain", cert: with(func(c *x509.Certificate) { c.PermittedURIDomains = []string{"west.mesh"} }), req: caReq, wantErr: `are ["west.mesh"]`},
		{name: "an extra trust domain", cert: with(func(c *x509.Certificate) { c.PermittedURIDomains = []string{"east.mesh", "west.mesh"} }), req: caReq, wantErr: `are ["east.mesh" "west.mesh"]`},
		{name: "constraint not critical", cert: with(func(c *x509.Certificate) { c.PermittedDNSDomainsCritical = false }), req: caReq, wantErr: "not critical"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckIssued(issued(tc.cert), tc.req)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("CheckIssued: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("CheckIssued error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
