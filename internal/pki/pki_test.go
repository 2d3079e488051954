package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshtrust/meshtrust/internal/pki/pkitest"
)

func TestDecodeCertificates(t *testing.T) {
	now := pkitest.RandomNow(t)
	s := newSet(t, now)
	two := append(s.inter.PEM(), s.root.PEM()...)
	noNewline := bytes.TrimRight(s.inter.PEM(), "\n")
	tests := []struct {
		name      string
		in        []byte
		max       int
		wantN     int
		wantCheck Check
	}{
		{"one", s.inter.PEM(), MaxChainPEMSize, 1, ""},
		{"two with whitespace", append(append([]byte("\n  "), two...), "\n\n"...), MaxChainPEMSize, 2, ""},
		{"no trailing newline", noNewline, MaxChainPEMSize, 1, ""},
		{"empty", nil, MaxChainPEMSize, 0, CheckPEM},
		{"garbage", []byte("hello"), MaxChainPEMSize, 0, CheckPEM},
		{"garbage before", append([]byte("junk\n"), s.inter.PEM()...), MaxChainPEMSize, 0, CheckPEM},
		{"garbage after", append(s.inter.PEM(), "junk"...), MaxChainPEMSize, 0, CheckPEM},
		{"fused blocks", append(append([]byte{}, noNewline...), s.root.PEM()...), MaxChainPEMSize, 0, CheckPEM},
		{"key block", s.inter.KeyPEM(t), MaxChainPEMSize, 0, CheckPEM},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), MaxChainPEMSize, 0, CheckCertificate},
		{"too large", two, len(two) - 1, 0, CheckSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeCertificates(tt.in, tt.max)
			if CheckOf(err) != tt.wantCheck {
				t.Fatalf("check = %q (err %v), want %q", CheckOf(err), err, tt.wantCheck)
			}
			if len(got) != tt.wantN {
				t.Fatalf("got %d certs, want %d", len(got), tt.wantN)
			}
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	now := pkitest.RandomNow(t)
	ec := pkitest.New(t, now, pkitest.Spec{CN: "ec"}, nil)
	rs := pkitest.New(t, now, pkitest.Spec{CN: "rsa", Key: pkitest.RSAKey(t)}, nil)
	tests := []struct {
		name      string
		in        []byte
		wantCheck Check
	}{
		{"PKCS#8 EC", ec.KeyPEM(t), ""},
		{"SEC1", pkitest.EncodeKey(t, ec.Key, pkitest.SEC1), ""},
		{"PKCS#1", pkitest.EncodeKey(t, rs.Key, pkitest.PKCS1), ""},
		{"PKCS#8 RSA", rs.KeyPEM(t), ""},
		{"empty", nil, CheckPrivateKey},
		{"certificate", ec.PEM(), CheckPrivateKey},
		{"two blocks", append(pkitest.EncodeKey(t, ec.Key, pkitest.SEC1), pkitest.EncodeKey(t, ec.Key, pkitest.SEC1)...), CheckPrivateKey},
		{"wrong type label", bytes.Replace(pkitest.EncodeKey(t, ec.Key, pkitest.SEC1), []byte("EC PRIVATE"), []byte("RSA PRIVATE"), 2), CheckPrivateKey},
		{"headers", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}), CheckPrivateKey},
		{"too large", bytes.Repeat([]byte("a"), MaxPrivateKeyPEMSize+1), CheckSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.in)
			if CheckOf(err) != tt.wantCheck {
				t.Fatalf("check = %q (err %v), want %q", CheckOf(err), err, tt.wantCheck)
			}
			if err == nil {
				if _, err := ParsePrivateKey(k.PEM); err != nil {
					t.Fatalf("canonical PEM does not re-parse: %v", err)
				}
			}
		})
	}
	k, _ := ParsePrivateKey(pkitest.EncodeKey(t, ec.Key, pkitest.SEC1))
	if err := KeyMatchesCertificate(k.Signer, ec.Cert); err != nil {
		t.Errorf("matching key: %v", err)
	}
	if err := KeyMatchesCertificate(k.Signer, rs.Cert); CheckOf(err) != CheckKeyMatch {
		t.Errorf("mismatched key: got %v", err)
	}
}

func TestOrderChain(t *testing.T) {
	now := pkitest.RandomNow(t)
	root := pkitest.New(t, now, pkitest.Spec{CN: "root"}, nil)
	i1 := pkitest.New(t, now, pkitest.Spec{CN: "i1"}, root)
	i2 := pkitest.New(t, now, pkitest.Spec{CN: "i2"}, i1)
	leaf := pkitest.New(t, now, pkitest.Spec{CN: "leaf", NotCA: true}, i2)
	other := pkitest.New(t, now, pkitest.Spec{CN: "other-root"}, nil)
	sib := pkitest.New(t, now, pkitest.Spec{CN: "sibling"}, i1)
	c := func(xs ...*pkitest.Cert) []*x509.Certificate {
		var out []*x509.Certificate
		for _, x := range xs {
			out = append(out, x.Cert)
		}
		return out
	}
	tests := []struct {
		name      string
		in        []*x509.Certificate
		want      []string
		wantRoot  string
		wantCheck Check
	}{
		{"ordered", c(leaf, i2, i1, root), []string{"leaf", "i2", "i1"}, "root", ""},
		{"shuffled with duplicates", c(i1, root, leaf, i2, i1, leaf), []string{"leaf", "i2", "i1"}, "root", ""},
		{"no root", c(i2, leaf, i1), []string{"leaf", "i2", "i1"}, "", ""},
		{"lone root", c(root), nil, "root", ""},
		{"lone intermediate", c(i1), []string{"i1"}, "", ""},
		{"gap", c(leaf, i1), nil, "", CheckChainOrder},
		{"two roots", c(i1, root, other), nil, "", CheckChainOrder},
		{"tree", c(i2, sib, i1), nil, "", CheckChainOrder},
		{"empty", nil, nil, "", CheckChainOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OrderChain(tt.in)
			if CheckOf(err) != tt.wantCheck {
				t.Fatalf("check = %q (err %v), want %q", CheckOf(err), err, tt.wantCheck)
			}
			if err != nil {
				return
			}
			var names []string
			for _, x := range got.Certs {
				names = append(names, x.Subject.CommonName)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Errorf("order = %v, want %v", names, tt.want)
			}
			var rn string
			if got.Root != nil {
				rn = got.Root.Subject.CommonName
			}
			if rn != tt.wantRoot {
				t.Errorf("root = %q, want %q", rn, tt.wantRoot)
			}
		})
	}
	others, roots := SplitRoots(c(leaf, root, i1, other))
	if len(others) != 2 || len(roots) != 2 {
		t.Errorf("SplitRoots = %d others, %d roots", len(others), len(roots))
	}
}

func TestVerify(t *testing.T) {
	now := pkitest.RandomNow(t)
	const ttl = 24 * time.Hour
	root := pkitest.New(t, now, pkitest.Spec{CN: "root", NotAfter: now.Add(365 * 24 * time.Hour)}, nil)
	otherRoot := pkitest.New(t, now, pkitest.Spec{CN: "other-root"}, nil)
	good := pkitest.New(t, now, pkitest.Spec{CN: "good"}, root)
	type mod func(d map[string][]byte)
	base := func(ic *pkitest.Cert, keyOf *pkitest.Cert) map[string][]byte {
		return map[string][]byte{
			TLSCertKey:      ic.PEM(),
			TLSKeyKey:       keyOf.KeyPEM(t),
			CACertBundleKey: root.PEM(),
		}
	}
	sub := pkitest.New(t, now, pkitest.Spec{CN: "sub"}, good)
	tests := []struct {
		name      string
		data      map[string][]byte
		wantCheck Check
		wantValue string
		wantField string
	}{
		{"good", base(good, good), "", "", ""},
		{"good with root in tls.crt", func() map[string][]byte {
			d := base(good, good)
			d[TLSCertKey] = append(good.PEM(), root.PEM()...)
			return d
		}(), "", "", ""},
		{"two levels", func() map[string][]byte {
			d := base(sub, sub)
			d[TLSCertKey] = append(sub.PEM(), good.PEM()...)
			return d
		}(), "", "", ""},
		{"missing tls.key", func() map[string][]byte { d := base(good, good); delete(d, TLSKeyKey); return d }(), CheckMissing, "", TLSKeyKey},
		{"garbage tls.crt", func() map[string][]byte { d := base(good, good); d[TLSCertKey] = []byte("garbage"); return d }(), CheckPEM, "", TLSCertKey},
		{"garbage tls.key", func() map[string][]byte { d := base(good, good); d[TLSKeyKey] = []byte("garbage"); return d }(), CheckPrivateKey, "", TLSKeyKey},
		{"key mismatch", base(good, otherRoot), CheckKeyMatch, `"CN=good"`, ""},
		{"not a CA", func() map[string][]byte {
			x := pkitest.New(t, now, pkitest.Spec{CN: "leafy", NotCA: true}, root)
			return base(x, x)
		}(), CheckIsCA, "CN=leafy", ""},
		{"expired", func() map[string][]byte {
			x := pkitest.New(t, now, pkitest.Spec{CN: "old", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Second)}, root)
			return base(x, x)
		}(), CheckExpired, "notAfter=", ""},
		{"not yet valid", func() map[string][]byte {
			x := pkitest.New(t, now, pkitest.Spec{CN: "future", NotBefore: now.Add(time.Hour)}, root)
			return base(x, x)
		}(), CheckNotYetValid, "notBefore=", ""},
		{"ca.crt empty", func() map[string][]byte { d := base(good, good); d[CACertBundleKey] = nil; return d }(), CheckMissing, "", CACertBundleKey},
		{"ca.crt another root", func() map[string][]byte { d := base(good, good); d[CACertBundleKey] = otherRoot.PEM(); return d }(), CheckChainVerify, Fingerprint(otherRoot.Cert), ""},
		{"ca.crt another root, chain carries its own", func() map[string][]byte {
			d := base(good, good)
			d[TLSCertKey] = append(good.PEM(), root.PEM()...)
			d[CACertBundleKey] = otherRoot.PEM()
			return d
		}(), CheckChainVerify, "", ""},
		{"clientAuth-only intermediate", func() map[string][]byte {
			x := pkitest.New(t, now, pkitest.Spec{CN: "client-only", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, root)
			return base(x, x)
		}(), CheckKeyUsage, "client-only", ""},
		{"clientAuth-only higher up", func() map[string][]byte {
			mid := pkitest.New(t, now, pkitest.Spec{CN: "client-mid", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, root)
			x := pkitest.New(t, now, pkitest.Spec{CN: "below"}, mid)
			d := base(x, x)
			d[TLSCertKey] = append(x.PEM(), mid.PEM()...)
			return d
		}(), CheckKeyUsage, "", ""},
		{"serverAuth+clientAuth ok", func() map[string][]byte {
			x := pkitest.New(t, now, pkitest.Spec{CN: "both", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}, root)
			return base(x, x)
		}(), "", "", ""},
		{"expires within one workload lifetime", func() map[string][]byte {
			x := pkitest.New(t, now, pkitest.Spec{CN: "short", NotAfter: now.Add(ttl - time.Minute)}, root)
			return base(x, x)
		}(), CheckLifetime, "less than the required 24h0m0s", ""},
		{"chain missing middle", base(sub, sub), CheckChainVerify, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseTLS(tt.data)
			if err == nil {
				err = Verify(b, now, ttl)
			}
			if CheckOf(err) != tt.wantCheck {
				t.Fatalf("check = %q (err %v), want %q", CheckOf(err), err, tt.wantCheck)
			}
			if err == nil {
				roundTrip(t, b, now, ttl)
				return
			}
			var e *Error
			errors.As(err, &e)
			if !strings.Contains(e.Value, tt.wantValue) {
				t.Errorf("value %q does not name %q", e.Value, tt.wantValue)
			}
			if tt.wantField != "" && e.Field != tt.wantField {
				t.Errorf("field = %q, want %q", e.Field, tt.wantField)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || (len(tt.data[TLSKeyKey]) > 0 && bytes.Contains([]byte(err.Error()), tt.data[TLSKeyKey])) {
				t.Errorf("error leaks key material: %v", err)
			}
		})
	}
}

// roundTrip renders both layouts, checks them key by key, and re-verifies.
func roundTrip(t *testing.T, b *Bundle, now time.Time, ttl time.Duration) {
	t.Helper()
	full, err := b.FullChain()
	if err != nil {
		t.Fatal(err)
	}
	for _, layout := range []Layout{LayoutIstio, LayoutTLS} {
		d, err := b.Data(layout)
		if err != nil {
			t.Fatal(err)
		}
		if len(d) != len(layout.Keys()) {
			t.Fatalf("%s: %d keys, want %v", layout, len(d), layout.Keys())
		}
		for _, k := range layout.Keys() {
			if bytes.Contains(d[k], []byte("----------")) {
				t.Errorf("%s %s: fused PEM blocks", layout, k)
			}
		}
		if layout == LayoutIstio {
			cc, _ := DecodeCertificates(d[CACertKey], MaxCertificatePEMSize)
			if len(cc) != 1 || !bytes.Equal(cc[0].Raw, b.Cert.Raw) {
				t.Errorf("ca-cert.pem is not the signing certificate")
			}
			chain, _ := DecodeCertificates(d[CertChainKey], MaxChainPEMSize)
			if len(chain) != len(full) || !IsSelfSigned(chain[len(chain)-1]) || !bytes.Equal(chain[0].Raw, b.Cert.Raw) {
				t.Errorf("cert-chain.pem is not signing cert .. root: %d certs", len(chain))
			}
		}
		b2, err := Parse(layout, d)
		if err != nil {
			t.Fatalf("%s: re-parse: %v", layout, err)
		}
		if err := Verify(b2, now, ttl); err != nil {
			t.Fatalf("%s: re-verify: %v", layout, err)
		}
	}
}

func TestMergeRoots(t *testing.T) {
	now := pkitest.RandomNow(t)
	old := pkitest.New(t, now, pkitest.Spec{CN: "old"}, nil)
	nu := pkitest.New(t, now, pkitest.Spec{CN: "new"}, nil)
	// Vault hands out PEM without a final newline and sometimes with a comment.
	prev := append([]byte("# old root\n"), bytes.TrimRight(old.PEM(), "\n")...)
	_, _, err := MergeRoots(prev, nil)
	if CheckOf(err) != CheckPEM {
		t.Fatalf("comment in previous should fail parsing, got %v", err)
	}
	prev = bytes.TrimRight(old.PEM(), "\n")
	got, all, err := MergeRoots(prev, []*x509.Certificate{nu.Cert, old.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, prev) {
		t.Errorf("merged bundle does not start with the previous bytes")
	}
	if len(all) != 2 || !bytes.Equal(all[1].Raw, nu.Cert.Raw) {
		t.Errorf("roots = %v", Fingerprints(all))
	}
	certs, err := DecodeCertificates(got, MaxRootBundlePEMSize)
	if err != nil || len(certs) != 2 {
		t.Fatalf("merged bundle parses to %d certs: %v", len(certs), err)
	}
	again, _, _ := MergeRoots(got, []*x509.Certificate{nu.Cert})
	if !bytes.Equal(again, got) {
		t.Errorf("merging the same roots again changed the bundle")
	}
}

func TestParseLayoutAndFingerprint(t *testing.T) {
	for in, want := range map[string]Layout{"": LayoutIstio, "istio": LayoutIstio, "tls": LayoutTLS} {
		if got, err := ParseLayout(in); err != nil || got != want {
			t.Errorf("ParseLayout(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseLayout("pkcs12"); CheckOf(err) != CheckLayout {
		t.Errorf("ParseLayout(pkcs12) err = %v", err)
	}
	if DetectLayout(map[string][]byte{CACertKey: {}}) != LayoutIstio || DetectLayout(map[string][]byte{TLSCertKey: {}}) != LayoutTLS || DetectLayout(nil) != "" {
		t.Error("DetectLayout")
	}
	c := pkitest.New(t, pkitest.RandomNow(t), pkitest.Spec{CN: "x"}, nil)
	if fp := Fingerprint(c.Cert); len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Errorf("fingerprint %q", fp)
	}
}

func TestLiveRoots(t *testing.T) {
	now := pkitest.RandomNow(t)
	old := pkitest.New(t, now, pkitest.Spec{CN: "old", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(time.Hour)}, nil)
	young := pkitest.New(t, now, pkitest.Spec{CN: "young", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour)}, nil)
	expired := pkitest.New(t, now, pkitest.Spec{CN: "expired", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, nil)
	future := pkitest.New(t, now, pkitest.Spec{CN: "future", NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}, nil)
	inter := pkitest.New(t, now, pkitest.Spec{CN: "inter"}, young)
	got := LiveRoots([]*x509.Certificate{young.Cert, inter.Cert, expired.Cert, old.Cert, future.Cert, young.Cert}, now)
	var names []string
	for _, c := range got {
		names = append(names, c.Subject.CommonName)
	}
	if strings.Join(names, ",") != "old,young" {
		t.Errorf("LiveRoots = %v, want the live roots once each, oldest first: old,young", names)
	}
}
