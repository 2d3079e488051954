package lab

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Projector does kubelet's part of one pod volume that mounts a Secret or a
// ConfigMap: it watches the object and keeps its keys in a directory, in
// kubelet's atomic layout (writeAtomicDir). The volume is optional, as
// istiod's cacerts volume is: while the object does not exist the
// directory is empty.
//
// How it differs from kubelet: kubelet applies a change at its next sync of
// the pod (--sync-frequency, a minute by default, plus jitter and its
// object cache's delay), so in a cluster a changed Secret reaches the files
// within about a minute or two. The projector writes on the watch event,
// within milliseconds, and does not simulate that delay: what the lab
// measures for this step is kubelet's lower bound. Files are 0644 for a
// ConfigMap, as kubelet's default mode, and 0600 for a Secret (a pod that
// sets defaultMode 0600).
type Projector struct {
	// Dir is the volume: the directory the process reads.
	Dir string
	// Source names the object, e.g. "Secret istio-system/cacerts".
	Source string

	mode     fs.FileMode
	payload  func(runtime.Object) map[string][]byte
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}

	mu      sync.Mutex
	writes  []Projection
	err     error
	changed chan struct{}
}

// Projection is one write of the volume.
type Projection struct {
	// Received is when the projector's watch delivered the version.
	Received time.Time
	// At is when the new version became visible (the ..data swap): a
	// reader that opens the files later reads this version.
	At time.Time
	// ResourceVersion is the object's version projected, "" once deleted
	// or while missing.
	ResourceVersion string
	// Keys are the files the volume holds, sorted.
	Keys []string
}

// ProjectSecret starts a projector of Secret namespace/name into dir and
// returns once dir holds the Secret's current state, as kubelet mounts a
// volume before the container starts.
func ProjectSecret(ctx context.Context, cs kubernetes.Interface, namespace, name, dir string) (*Projector, error) {
	return startProjector(ctx, cs, &corev1.Secret{}, "secrets", namespace, name, dir, 0o600, func(o runtime.Object) map[string][]byte {
		return maps.Clone(o.(*corev1.Secret).Data)
	})
}

// ProjectConfigMap starts a projector of ConfigMap namespace/name into dir,
// as ProjectSecret.
func ProjectConfigMap(ctx context.Context, cs kubernetes.Interface, namespace, name, dir string) (*Projector, error) {
	return startProjector(ctx, cs, &corev1.ConfigMap{}, "configmaps", namespace, name, dir, 0o644, func(o runtime.Object) map[string][]byte {
		cm := o.(*corev1.ConfigMap)
		out := maps.Clone(cm.BinaryData)
		if out == nil {
			out = map[string][]byte{}
		}
		for k, v := range cm.Data {
			out[k] = []byte(v)
		}
		return out
	})
}

func startProjector(ctx context.Context, cs kubernetes.Interface, obj runtime.Object, resource, namespace, name, dir string,
	mode fs.FileMode, payload func(runtime.Object) map[string][]byte) (*Projector, error) {
	kind := map[string]string{"secrets": "Secret", "configmaps": "ConfigMap"}[resource]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the volume for %s %s/%s: %w", kind, namespace, name, err)
	}
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), resource, namespace, fields.OneTermEqualSelector("metadata.name", name))
	p := &Projector{
		Dir:      dir,
		Source:   fmt.Sprintf("%s %s/%s", kind, namespace, name),
		mode:     mode,
		payload:  payload,
		informer: cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{}),
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
	project := func(o any) {
		if tomb, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = tomb.Obj
		}
		if ro, ok := o.(runtime.Object); ok {
			p.project(ro)
		}
	}
	if _, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    project,
		UpdateFunc: func(_, o any) { project(o) },
		// An optional volume whose object is deleted empties, as kubelet
		// then projects an empty payload.
		DeleteFunc: func(any) { p.project(nil) },
	}); err != nil {
		return nil, fmt.Errorf("watching %s: %w", p.Source, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go func() {
		defer close(p.done)
		p.informer.Run(runCtx.Done())
	}()
	if !cache.WaitForCacheSync(ctx.Done(), p.informer.HasSynced) {
		p.Stop()
		return nil, fmt.Errorf("watching %s: the first list did not complete: %w", p.Source, ctx.Err())
	}
	if len(p.informer.GetStore().List()) == 0 {
		p.project(nil)
	}
	if err := p.Err(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// project writes o's keys (none for nil) into the volume.
func (p *Projector) project(o runtime.Object) {
	received := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	data := map[string][]byte{}
	rv := ""
	if o != nil {
		data = p.payload(o)
		if m, ok := o.(interface{ GetResourceVersion() string }); ok {
			rv = m.GetResourceVersion()
		}
	}
	at, err := writeAtomicDir(p.Dir, data, p.mode)
	if err != nil {
		p.err = fmt.Errorf("projecting %s (resourceVersion %q): %w", p.Source, rv, err)
		return
	}
	p.err = nil
	if at.IsZero() {
		// Unchanged content; a new resourceVersion of it still counts as
		// projected, at the time of the write that holds it.
		if n := len(p.writes); n > 0 {
			at = p.writes[n-1].At
		} else {
			at = time.Now()
		}
	}
	p.writes = append(p.writes, Projection{Received: received, At: at, ResourceVersion: rv, Keys: slices.Sorted(maps.Keys(data))})
	close(p.changed)
	p.changed = make(chan struct{})
}

// Projections lists every write so far, oldest first; the first is the
// initial mount.
func (p *Projector) Projections() []Projection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.writes)
}

// Err is the last projection's error, if it failed.
func (p *Projector) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// WaitProjected waits until the volume holds resourceVersion rv of the
// object (or a later one) and returns that write.
func (p *Projector) WaitProjected(ctx context.Context, rv string) (Projection, error) {
	for {
		p.mu.Lock()
		changed, err := p.changed, p.err
		for _, w := range p.writes {
			if w.ResourceVersion == rv {
				p.mu.Unlock()
				return w, nil
			}
		}
		// A watch may coalesce versions: a later one than rv counts.
		if n := len(p.writes); n > 0 && newerVersion(p.writes[n-1].ResourceVersion, rv) {
			w := p.writes[n-1]
			p.mu.Unlock()
			return w, nil
		}
		p.mu.Unlock()
		if err != nil {
			return Projection{}, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Projection{}, fmt.Errorf("waiting for the volume %s to hold %s at resourceVersion %s: %w", p.Dir, p.Source, rv, ctx.Err())
		}
	}
}

// newerVersion compares resourceVersions as the etcd revisions they are in
// this lab's API servers (a client may not rely on that in general).
func newerVersion(a, b string) bool {
	var x, y uint64
	if _, err := fmt.Sscan(a, &x); err != nil {
		return false
	}
	if _, err := fmt.Sscan(b, &y); err != nil {
		return false
	}
	return x > y
}

// Stop stops watching; the directory stays as it is.
func (p *Projector) Stop() {
	p.cancel()
	<-p.done
}
