package statusguard

import (
	"context"
	"encoding/json"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// recordingClient keeps the status patches it is given instead of sending
// them: the fake client cannot say what a real API server does with a version
// (e2e/issuer proves that), only what the guard asks of it.
type recordingClient struct {
	client.Client
	patches []recorded
}

type recorded struct {
	name string
	typ  types.PatchType
	body map[string]any
}

func (r *recordingClient) Status() client.SubResourceWriter { return &recordingWriter{r} }

type recordingWriter struct{ r *recordingClient }

func (w *recordingWriter) Create(context.Context, client.Object, client.Object, ...client.SubResourceCreateOption) error {
	return nil
}
func (w *recordingWriter) Update(context.Context, client.Object, ...client.SubResourceUpdateOption) error {
	return nil
}
func (w *recordingWriter) Apply(context.Context, runtime.ApplyConfiguration, ...client.SubResourceApplyOption) error {
	return nil
}
func (w *recordingWriter) Patch(_ context.Context, obj client.Object, patch client.Patch, _ ...client.SubResourcePatchOption) error {
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	var body map[string]any
	_ = json.Unmarshal(data, &body)
	w.r.patches = append(w.r.patches, recorded{name: obj.GetName(), typ: patch.Type(), body: body})
	return nil
}

func request(name, uid string, conds ...cmapi.CertificateRequestCondition) *cmapi.CertificateRequest {
	return &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid)},
		Status: cmapi.CertificateRequestStatus{Conditions: conds}}
}

func applyFor(name string) (client.Object, client.Patch) {
	body, _ := json.Marshal(map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
		"metadata": map[string]any{"name": name, "namespace": "ns"}, "status": map[string]any{"certificate": "Zm9v"}})
	return &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}, client.RawPatch(types.ApplyPatchType, body)
}

// uidOf is the UID the patch carries, if it carries the version read too.
func uidOf(p recorded) any {
	meta, _ := p.body["metadata"].(map[string]any)
	if meta["uid"] != nil && meta["resourceVersion"] == nil {
		return "uid without resourceVersion"
	}
	return meta["uid"]
}

func TestStatusApplyCarriesTheVersionRead(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := cmapi.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	issued := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: cmapi.CertificateRequestReasonIssued}
	failed := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: cmapi.CertificateRequestReasonFailed}
	denied := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue}
	initializing := cmapi.CertificateRequestCondition{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionUnknown, Reason: cmapi.CertificateRequestReasonPending}

	tests := []struct {
		name    string
		stored  *cmapi.CertificateRequest
		read    string // the name read before the patch; "" reads nothing
		wantUID any
	}{
		{name: "pending request read then written", stored: request("a", "uid-a"), read: "a", wantUID: "uid-a"},
		{name: "initializing request read then written", stored: request("a", "uid-a", initializing), read: "a", wantUID: "uid-a"},
		{name: "written without a read", stored: request("a", "uid-a"), read: "", wantUID: nil},
		{name: "issued request is not tracked", stored: request("a", "uid-a", issued), read: "a", wantUID: nil},
		{name: "failed request is not tracked", stored: request("a", "uid-a", failed), read: "a", wantUID: nil},
		{name: "denied request is not tracked", stored: request("a", "uid-a", denied), read: "a", wantUID: nil},
		{name: "vanished request is forgotten", stored: request("other", "uid-o"), read: "a", wantUID: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := &recordingClient{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.stored).Build()}
			g := New(inner)
			ctx := context.Background()
			if tc.read != "" {
				_ = g.Get(ctx, client.ObjectKey{Namespace: "ns", Name: tc.read}, &cmapi.CertificateRequest{})
			}
			obj, patch := applyFor("a")
			if err := g.Status().Patch(ctx, obj, patch); err != nil {
				t.Fatal(err)
			}
			if len(inner.patches) != 1 {
				t.Fatalf("%d patches sent, want 1", len(inner.patches))
			}
			p := inner.patches[0]
			if p.typ != types.ApplyPatchType || p.body["status"] == nil {
				t.Fatalf("patch changed beyond the UID: %s %v", p.typ, p.body)
			}
			if got := uidOf(p); got != tc.wantUID {
				t.Errorf("metadata.uid = %v, want %v", got, tc.wantUID)
			}
			if n := g.Tracked(); n != 0 {
				t.Errorf("%d requests still tracked after the write", n)
			}
		})
	}
}

// A UID is used once: a second write without a fresh read is not guarded
// by a stale UID, and a merge patch is never rewritten.
func TestUIDIsUsedOnceAndOnlyForApply(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = cmapi.AddToScheme(scheme)
	inner := &recordingClient{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(request("a", "uid-a")).Build()}
	g := New(inner)
	ctx := context.Background()
	_ = g.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "a"}, &cmapi.CertificateRequest{})
	obj, patch := applyFor("a")
	_ = g.Status().Patch(ctx, obj, patch)
	_ = g.Status().Patch(ctx, obj, patch)
	if uidOf(inner.patches[0]) != "uid-a" || uidOf(inner.patches[1]) != nil {
		t.Errorf("UIDs sent: %v then %v, want uid-a then none", uidOf(inner.patches[0]), uidOf(inner.patches[1]))
	}

	_ = g.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "a"}, &cmapi.CertificateRequest{})
	merge := client.RawPatch(types.MergePatchType, []byte(`{"status":{}}`))
	_ = g.Status().Patch(ctx, obj, merge)
	if last := inner.patches[2]; last.typ != types.MergePatchType || uidOf(last) != nil {
		t.Errorf("merge patch rewritten: %s %v", last.typ, last.body)
	}

	// Objects of other kinds pass through untouched.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}}
	if err := g.Get(ctx, client.ObjectKeyFromObject(secret), secret); err == nil || g.Tracked() != 0 {
		t.Errorf("Secret read: err %v, tracked %d", err, g.Tracked())
	}
}
