// Package statusguard makes a controller's server-side-applied status
// writes land only on the object version it read.
//
// issuer-lib (v0.11.0) reads a request, signs it, and applies the result to
// the status of whatever object has that name by then. cert-manager, with
// StableCertificateRequestName (on by default), deletes a CertificateRequest
// whose CSR no longer matches the Certificate's next private key and creates
// a new one under the same name. A certificate signed for the old CSR then
// lands on the new request; cert-manager finds its key does not match, fails
// the issuance and backs off for an hour.
//
// The guard puts the resourceVersion that was read into the apply, which
// the API server checks as a precondition, on the status subresource too:
// a replaced (or otherwise changed) request makes the write conflict, and
// the controller's retry reads the request anew. metadata.uid alone would
// not do: the status strategy drops metadata changes without a word.
package statusguard

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// key names one guarded object: its kind and namespace/name.
type key struct {
	kind string
	types.NamespacedName
}

// Client remembers the version of each pending CertificateRequest and
// CertificateSigningRequest it reads, and puts it into the next status
// apply for that object. Everything else passes through unchanged.
//
// A controller reconciles one key at a time, so the read and the write
// that follows it pair up per key.
type Client struct {
	client.Client
	mu    sync.Mutex
	reads map[key]Read
}

// Read is the identity and version of the object a controller read.
type Read struct {
	UID             types.UID
	ResourceVersion string
}

// New wraps c.
func New(c client.Client) *Client {
	return &Client{Client: c, reads: map[key]Read{}}
}

// Get reads obj and, for a request still waiting for a signature, records
// its UID and resourceVersion. Finished and vanished requests are forgotten, so the map holds
// only requests in flight.
func (c *Client) Get(ctx context.Context, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.Client.Get(ctx, k, obj, opts...)
	kind, guarded := guardedKind(obj)
	if !guarded {
		return err
	}
	gk := key{kind: kind, NamespacedName: k}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil && pending(obj):
		c.reads[gk] = Read{UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()}
	case err == nil || apierrors.IsNotFound(err):
		delete(c.reads, gk)
	}
	return err
}

// Status returns a writer whose apply patches carry the recorded version.
func (c *Client) Status() client.SubResourceWriter {
	return &statusWriter{SubResourceWriter: c.Client.Status(), guard: c}
}

// take returns and forgets what was recorded for obj.
func (c *Client) take(obj client.Object) (Read, bool) {
	kind, guarded := guardedKind(obj)
	if !guarded {
		return Read{}, false
	}
	gk := key{kind: kind, NamespacedName: client.ObjectKeyFromObject(obj)}
	c.mu.Lock()
	defer c.mu.Unlock()
	uid, ok := c.reads[gk]
	delete(c.reads, gk)
	return uid, ok
}

// Tracked is how many requests in flight have a recorded read.
func (c *Client) Tracked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reads)
}

type statusWriter struct {
	client.SubResourceWriter
	guard *Client
}

func (w *statusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	read, ok := w.guard.take(obj)
	if !ok || patch.Type() != types.ApplyPatchType {
		return w.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	}
	guarded, err := WithRead(patch, obj, read)
	if err != nil {
		return err
	}
	return w.SubResourceWriter.Patch(ctx, obj, guarded, opts...)
}

// WithRead returns the apply patch with metadata.uid and resourceVersion
// set to what was read.
func WithRead(patch client.Patch, obj client.Object, read Read) (client.Patch, error) {
	data, err := patch.Data(obj)
	if err != nil {
		return nil, fmt.Errorf("rendering the status apply for %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decoding the status apply for %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	meta, _ := doc["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		doc["metadata"] = meta
	}
	meta["uid"] = string(read.UID)
	meta["resourceVersion"] = read.ResourceVersion
	if data, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("encoding the status apply for %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return client.RawPatch(types.ApplyPatchType, data), nil
}

func guardedKind(obj client.Object) (string, bool) {
	switch obj.(type) {
	case *cmapi.CertificateRequest:
		return cmapi.CertificateRequestKind, true
	case *certificatesv1.CertificateSigningRequest:
		return "CertificateSigningRequest", true
	default:
		return "", false
	}
}

// pending reports whether a request may still get a status write: not yet
// issued, failed or denied.
func pending(obj client.Object) bool {
	switch r := obj.(type) {
	case *cmapi.CertificateRequest:
		for _, c := range r.Status.Conditions {
			if (c.Type == cmapi.CertificateRequestConditionReady && (c.Status == "True" || c.Reason == cmapi.CertificateRequestReasonFailed)) ||
				(c.Type == cmapi.CertificateRequestConditionDenied && c.Status == "True") {
				return false
			}
		}
		return true
	case *certificatesv1.CertificateSigningRequest:
		if len(r.Status.Certificate) > 0 {
			return false
		}
		for _, c := range r.Status.Conditions {
			if (c.Type == certificatesv1.CertificateFailed || c.Type == certificatesv1.CertificateDenied) && c.Status == "True" {
				return false
			}
		}
		return true
	default:
		return false
	}
}
