package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshtrust/meshtrust/internal/pki"
	"github.com/meshtrust/meshtrust/internal/rotation"
	"github.com/meshtrust/meshtrust/internal/vaultcontract"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const day = 24 * time.Hour

// scenarios are the inputs of the golden tests, one per interesting state.
func scenarios(t *testing.T) map[string][]Input {
	root := newRoot(t, 1, "mesh root A")
	other := newRoot(t, 2, "mesh root B")
	east := sign(t, root, intermediateOpts{seed: 11, cn: "east istio intermediate CA", td: "east.mesh", lifetime: 30 * day, age: day})
	west := sign(t, root, intermediateOpts{seed: 12, cn: "west istio intermediate CA", td: "west.mesh", lifetime: 30 * day, age: 2 * day})
	westOther := sign(t, other, intermediateOpts{seed: 13, cn: "west istio intermediate CA", td: "west.mesh", lifetime: 30 * day, age: 2 * day})
	westSameTD := sign(t, root, intermediateOpts{seed: 14, cn: "west istio intermediate CA", td: "east.mesh", lifetime: 30 * day, age: 2 * day})
	core := sign(t, root, intermediateOpts{seed: 18, cn: "core istio intermediate CA", td: "mesh", lifetime: 30 * day, age: 2 * day})
	unconstrained := sign(t, root, intermediateOpts{seed: 15, cn: "west istio intermediate CA", lifetime: 30 * day, age: 2 * day})
	renewing := sign(t, root, intermediateOpts{seed: 16, cn: "west istio intermediate CA", td: "west.mesh", lifetime: 30 * day, age: 25 * day})
	ready := []cmapi.Certificate{readyCertificate(cmmeta.ConditionTrue, "Ready")}

	reviewer := func(ns, mount string, left time.Duration) []corev1.ServiceAccount {
		return []corev1.ServiceAccount{{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "meshtrust-vault-reviewer",
			Annotations: map[string]string{vaultcontract.ReviewerTokenExpiresAnnotation: epoch.Add(left).Format(time.RFC3339), vaultcontract.ReviewerTokenMountAnnotation: mount}}}}
	}

	mesh := func(yaml string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio"}, Data: map[string]string{"mesh": yaml}}
	}
	north := sign(t, root, intermediateOpts{seed: 17, cn: "north istio intermediate CA", td: "north.mesh", lifetime: 30 * day, age: day})

	garbage := istioSecret(t, west, root)
	garbage.Data[pki.CAKeyKey] = []byte("-----BEGIN PRIVATE KEY-----\nnot base64 at all!!\n-----END PRIVATE KEY-----\n")
	garbage.Data[pki.RootCertKey] = []byte("\x00\x01 garbage")

	return map[string][]Input{
		"healthy": {
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "west", Secret: tlsSecret(t, west, root), Certificates: ready},
		},
		"mismatched_root": {
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "west", Secret: istioSecret(t, westOther, other), Certificates: ready},
		},
		"odd_one_out": {
			// Two clusters agree on the root, so the third is the one named.
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "west", Secret: istioSecret(t, westOther, other), Certificates: ready},
			{Context: "north", Secret: istioSecret(t, sign(t, root, intermediateOpts{seed: 17, cn: "north istio intermediate CA", td: "north.mesh", lifetime: 30 * day, age: day}), root), Certificates: ready},
		},
		"root_transition": {
			// west already trusts both roots; east only the old one. Still
			// all yes, but the roots differ.
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "west", Secret: istioSecret(t, west, root, other), Certificates: []cmapi.Certificate{rotating(readyCertificate(cmmeta.ConditionTrue, "Ready"))}},
		},
		"garbage_and_missing": {
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "west", Secret: garbage, Certificates: []cmapi.Certificate{readyCertificate(cmmeta.ConditionFalse, "Issuing")}},
			{Context: "north"},
			// managed, but its source Certificate is gone
			{Context: "up", Secret: istioSecret(t, east, root)},
			{Context: "south", Err: errors.New(`Get "https://127.0.0.1:1/api/v1/namespaces/istio-system/secrets/cacerts": dial tcp 127.0.0.1:1: connect: connection refused`)},
		},
		"overlapping_trust_domains": {
			// west has east's trust domain; core's "mesh" covers both.
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "west", Secret: istioSecret(t, westSameTD, root), Certificates: ready},
			{Context: "core", Secret: istioSecret(t, core, root), Certificates: ready},
			{Context: "north", Secret: istioSecret(t, sign(t, root, intermediateOpts{seed: 17, cn: "north istio intermediate CA", td: "north.mesh", lifetime: 30 * day, age: day}), root), Certificates: ready},
		},
		"istio_mesh": {
			// east's mesh config agrees, but lacks north's alias; west's
			// sets no trust domain, so istiod signs for cluster.local;
			// north has none to check.
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready, MeshSource: "istio-system/istio", Mesh: mesh("trustDomain: east.mesh\ntrustDomainAliases: [west.mesh]\n")},
			{Context: "west", Secret: istioSecret(t, west, root), Certificates: ready, MeshSource: "istio-system/istio", Mesh: mesh("accessLogFile: /dev/stdout\n")},
			{Context: "north", Secret: istioSecret(t, north, root), Certificates: ready, MeshSource: "istio-system/istio"},
		},
		"reviewer_tokens": {
			// east's stored reviewer token is due for renewal, west's has
			// lapsed, north's is far from it.
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready, Reviewers: reviewer("kube-system", "kubernetes-east", 10*day)},
			{Context: "west", Secret: istioSecret(t, west, root), Certificates: ready, Reviewers: reviewer("kube-system", "kubernetes-west", -time.Hour)},
			{Context: "north", Secret: istioSecret(t, sign(t, root, intermediateOpts{seed: 17, cn: "north istio intermediate CA", td: "north.mesh", lifetime: 30 * day, age: day}), root), Certificates: ready,
				Reviewers: reviewer("vault", "kubernetes-north", 200*day)},
		},
		"warnings": {
			{Context: "east", Secret: istioSecret(t, east, root), Certificates: ready},
			{Context: "north", Secret: istioSecret(t, unconstrained, root), Certificates: ready},
			{Context: "south", Secret: istioSecret(t, renewing, root), Certificates: ready},
		},
	}
}

func TestTableGolden(t *testing.T) {
	for name, inputs := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			r := Build(inputs, epoch, Options{})
			checkGolden(t, name, r)
		})
	}
}

// checkGolden compares r's table with testdata/<name>.golden (go test
// -update rewrites it).
func checkGolden(t *testing.T, name string, r Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := Table(&buf, r); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got := buf.String(); got != string(want) {
		t.Errorf("table differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

func TestVerdicts(t *testing.T) {
	all := scenarios(t)
	cases := []struct {
		name          string
		healthy       bool
		unhealthy     []string
		allYes        bool
		warnContains  []string
		problemOf     string
		problemSubstr string
	}{
		{name: "healthy", healthy: true, allYes: true},
		{name: "mismatched_root", unhealthy: []string{"east", "west"}, warnContains: []string{"roots differ"},
			problemOf: "west", problemSubstr: "does not chain to any root of east"},
		{name: "odd_one_out", unhealthy: []string{"west"}, warnContains: []string{"roots differ"},
			problemOf: "west", problemSubstr: "holds none of the expected roots"},
		{name: "root_transition", allYes: true, warnContains: []string{"roots differ"}},
		{name: "garbage_and_missing", unhealthy: []string{"east", "west", "north", "up", "south"},
			problemOf: "west", problemSubstr: "cacerts does not validate"},
		{name: "overlapping_trust_domains", unhealthy: []string{"east", "west", "core", "north"}, allYes: true,
			problemOf: "core", problemSubstr: "trust domain mesh contains trust domain east.mesh of east"},
		{name: "istio_mesh", unhealthy: []string{"west"}, allYes: true,
			warnContains: []string{"east: trust domain north.mesh of federated peer north is not in Istio's meshConfig.trustDomainAliases (istio-system/istio: west.mesh)"},
			problemOf:    "west", problemSubstr: `Istio's trust domain is "cluster.local" (istiod's default: ConfigMap istio-system/istio sets no meshConfig.trustDomain), but the intermediate in cacerts is constrained to "west.mesh"`},
		{name: "reviewer_tokens", unhealthy: []string{"west"}, allYes: true,
			warnContains: []string{"east: the Vault reviewer token stored in auth/kubernetes-east (ServiceAccount kube-system/meshtrust-vault-reviewer) expires in 10d0h"},
			problemOf:    "west", problemSubstr: "the Vault reviewer token stored in auth/kubernetes-west (ServiceAccount kube-system/meshtrust-vault-reviewer) expired at"},
		{name: "warnings", allYes: true, warnContains: []string{
			"north: intermediate has no URI name constraint",
			"south: intermediate is inside its renewal window",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Build(all[tc.name], epoch, Options{})
			if r.Healthy != tc.healthy {
				t.Errorf("Healthy = %v, want %v (warnings %q)", r.Healthy, tc.healthy, r.Warnings)
			}
			if got := strings.Join(r.Unhealthy(), ","); got != strings.Join(tc.unhealthy, ",") {
				t.Errorf("Unhealthy() = %q, want %q", got, tc.unhealthy)
			}
			if r.Matrix.AllYes() != tc.allYes {
				t.Errorf("matrix all yes = %v, want %v: %v", r.Matrix.AllYes(), tc.allYes, r.Matrix.Trusts)
			}
			for _, w := range tc.warnContains {
				if !strings.Contains(strings.Join(r.Warnings, "\n"), w) {
					t.Errorf("no warning containing %q in %q", w, r.Warnings)
				}
			}
			if tc.problemOf != "" {
				found := false
				for _, c := range r.Clusters {
					if c.Context == tc.problemOf && strings.Contains(strings.Join(c.Problems, "\n"), tc.problemSubstr) {
						found = true
					}
				}
				if !found {
					t.Errorf("cluster %s has no problem containing %q", tc.problemOf, tc.problemSubstr)
				}
			}
		})
	}
}

// The JSON and YAML forms carry the same facts, parse back, and never hold
// key material.
func TestStructuredOutput(t *testing.T) {
	inputs := scenarios(t)["healthy"]
	r := Build(inputs, epoch, Options{})
	for _, format := range []string{"json", "yaml"} {
		var buf bytes.Buffer
		if err := Render(&buf, r, format); err != nil {
			t.Fatal(err)
		}
		var back Report
		var err error
		if format == "json" {
			err = json.Unmarshal(buf.Bytes(), &back)
		} else {
			err = yaml.Unmarshal(buf.Bytes(), &back)
		}
		if err != nil {
			t.Fatalf("%s does not parse back: %v", format, err)
		}
		if !back.Healthy || len(back.Clusters) != 2 || !back.Matrix.AllYes() || back.Clusters[1].Layout != "tls" {
			t.Errorf("%s round trip lost facts: %+v", format, back)
		}
		for _, in := range inputs {
			for _, k := range []string{pki.CAKeyKey, pki.TLSKeyKey} {
				if key := in.Secret.Data[k]; key != nil && bytes.Contains(buf.Bytes(), bytes.TrimSpace(key)[30:60]) {
					t.Errorf("%s output contains private key material of %s", format, in.Context)
				}
			}
		}
	}
	if err := Render(&bytes.Buffer{}, r, "xml"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestExport(t *testing.T) {
	in := scenarios(t)["healthy"][0]
	dir := t.TempDir()
	files, err := Export(dir, "arn:aws:eks:eu-west-1:1:cluster/east", in.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("exported %v, want the 4 istio keys", files)
	}
	sub := filepath.Join(dir, "arn_aws_eks_eu-west-1_1_cluster_east")
	for _, k := range []string{pki.CACertKey, pki.CAKeyKey, pki.CertChainKey, pki.RootCertKey} {
		b, err := os.ReadFile(filepath.Join(sub, k))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, in.Secret.Data[k]) {
			t.Errorf("%s differs from the Secret", k)
		}
		st, _ := os.Stat(filepath.Join(sub, k))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", k, st.Mode().Perm())
		}
	}
	// What istiod would load from the exported files validates.
	data := map[string][]byte{}
	for _, k := range pki.LayoutIstio.Keys() {
		data[k], _ = os.ReadFile(filepath.Join(sub, k))
	}
	b, err := pki.ParseIstio(data)
	if err == nil {
		err = pki.Verify(b, epoch, 0)
	}
	if err != nil {
		t.Errorf("exported files do not validate: %v", err)
	}
	if _, err := Export(dir, "x", &corev1.Secret{Data: map[string][]byte{"../evil": []byte("x")}}); err == nil {
		t.Error("a key with a path was exported")
	}
}

func FuzzBuild(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), []byte("x"), []byte(""))
	f.Fuzz(func(t *testing.T, cert, key, roots []byte) {
		for _, layout := range []map[string][]byte{
			{pki.CACertKey: cert, pki.CAKeyKey: key, pki.RootCertKey: roots},
			{pki.TLSCertKey: cert, pki.TLSKeyKey: key, pki.CACertBundleKey: roots},
		} {
			r := Build([]Input{{Context: "c", Secret: &corev1.Secret{Data: layout}}}, epoch, Options{})
			if r.Healthy && len(r.Clusters[0].Problems) > 0 {
				t.Fatal("healthy with problems")
			}
			if err := Table(&bytes.Buffer{}, r); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// With the expected root given (as bootstrap printed it, in any case and
// with colons), a two-cluster mismatch names only the cluster at fault.
func TestExpectedRoots(t *testing.T) {
	inputs := scenarios(t)["mismatched_root"]
	root := newRoot(t, 1, "mesh root A")
	fp := strings.ToUpper(pki.Fingerprint(root.Cert))
	var colons []string
	for i := 0; i < len(fp); i += 2 {
		colons = append(colons, fp[i:i+2])
	}
	r := Build(inputs, epoch, Options{ExpectedRoots: []string{strings.Join(colons, ":")}})
	if got := strings.Join(r.Unhealthy(), ","); got != "west" {
		t.Errorf("Unhealthy() = %q, want west only; problems: %+v", got, r.Clusters)
	}
	r = Build(inputs, epoch, Options{ExpectedRoots: []string{pki.Fingerprint(newRoot(t, 2, "mesh root B").Cert)}})
	if got := strings.Join(r.Unhealthy(), ","); got != "east" {
		t.Errorf("expecting root B: Unhealthy() = %q, want east only", got)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		29*day + 23*time.Hour + 59*time.Minute: "29d23h",
		5*time.Hour + 3*time.Minute:            "5h3m",
		-(2*day + time.Hour):                   "-2d1h",
		0:                                      "0h0m",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// BenchmarkBuild measures a status of many clusters: the trust matrix runs
// the shared Verify once per pair, so it grows with the square.
func BenchmarkBuild(b *testing.B) {
	t := b
	root := newRoot(t, 1, "mesh root A")
	for _, n := range []int{2, 10, 30} {
		inputs := make([]Input, n)
		for i := range inputs {
			inter := sign(t, root, intermediateOpts{seed: byte(20 + i), cn: fmt.Sprintf("c%d", i), td: fmt.Sprintf("c%d.mesh", i), lifetime: 30 * day, age: day})
			inputs[i] = Input{Context: fmt.Sprintf("c%d", i), Secret: istioSecret(t, inter, root)}
		}
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			for b.Loop() {
				if r := Build(inputs, epoch, Options{}); !r.Healthy {
					b.Fatal("unhealthy")
				}
			}
		})
	}
}

// rotating is crt with the record rotate-root leaves once the cluster
// trusts both roots.
func rotating(crt cmapi.Certificate) cmapi.Certificate {
	crt.Annotations = map[string]string{rotation.RecordAnnotation: `{"from":"meshtrust-root","to":"meshtrust-root-2","phase":2,"phaseName":"both-trusted","at":"2026-01-01T00:00:00Z"}`}
	return crt
}
