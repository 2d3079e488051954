package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

func TestParseCSR(t *testing.T) {
	good := pkitest.URICSR(t, pkitest.ECKey(t), "east.mesh", "spiffe://east.mesh")
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	// The last bytes are the signature; flipping one breaks it.
	tampered[len(tampered)-3] ^= 0xff
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "valid ECDSA P-256", in: good},
		{name: "not PEM", in: []byte("hello"), wantErr: "not PEM-encoded"},
		{name: "wrong PEM type", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), wantErr: `is "CERTIFICATE"`},
		{name: "garbage DER", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}), wantErr: "does not parse"},
		{name: "bad signature", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), wantErr: "signature does not verify"},
		{name: "weak RSA", in: pkitest.URICSR(t, weakRSAKey(t), "x"), wantErr: "RSA key has 1024 bits"},
		{name: "weak curve", in: pkitest.URICSR(t, p224, "x"), wantErr: "curve P-224"},
		{name: "oversized", in: make([]byte, maxCSRBytes+1), wantErr: "over the"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCSR(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseCSR(f *testing.F) {
	f.Add(pkitest.URICSR(f, pkitest.ECKey(f), "east.mesh", "spiffe://east.mesh"))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err == nil && csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
	})
}

func TestCheckCAURIs(t *testing.T) {
	tests := []struct {
		name    string
		uris    []string
		wantErr string
	}{
		{name: "none"},
		{name: "exact trust domain", uris: []string{"spiffe://east.mesh"}},
		{name: "other trust domain", uris: []string{"spiffe://west.mesh"}, wantErr: `"spiffe://west.mesh"`},
		{name: "with path", uris: []string{"spiffe://east.mesh/ns/a"}, wantErr: `"spiffe://east.mesh/ns/a"`},
		{name: "trailing slash", uris: []string{"spiffe://east.mesh/"}, wantErr: `"spiffe://east.mesh/"`},
		{name: "not spiffe", uris: []string{"https://east.mesh"}, wantErr: `"https://east.mesh"`},
		{name: "two URIs", uris: []string{"spiffe://east.mesh", "spiffe://east.mesh"}, wantErr: "at most one URI SAN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCAURIs(mustURLs(t, tc.uris...), "east.mesh")
			checkErr(t, err, tc.wantErr)
		})
	}
}

func TestCheckLeafURIs(t *testing.T) {
	tests := []struct {
		name        string
		trustDomain string
		uris        []string
		wantErr     string
	}{
		{name: "no trust domain allows anything", uris: []string{"spiffe://west.mesh/ns/a/sa/b"}},
		{name: "own trust domain", trustDomain: "east.mesh", uris: []string{"spiffe://east.mesh/ns/a/sa/b"}},
		{name: "other trust domain", trustDomain: "east.mesh", uris: []string{"spiffe://west.mesh/ns/a/sa/b"}, wantErr: `"spiffe://west.mesh/ns/a/sa/b"`},
		{name: "port smuggling", trustDomain: "east.mesh", uris: []string{"spiffe://east.mesh:1/ns/a"}, wantErr: "east.mesh:1"},
		{name: "non-spiffe left to Vault", trustDomain: "east.mesh", uris: []string{"https://example.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, CheckLeafURIs(mustURLs(t, tc.uris...), tc.trustDomain), tc.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want it to contain %q", err, want)
	}
}
