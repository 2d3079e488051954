package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshtrust/meshtrust/e2e/deploy"
	"github.com/meshtrust/meshtrust/e2e/lab"
)

var (
	helmOnce sync.Once
	helmBin  *deploy.Helm
	helmErr  error
	rootDir  string
)

// helm returns the located helm binary, failing t when it is missing.
func helm(t testing.TB) *deploy.Helm {
	t.Helper()
	helmOnce.Do(func() {
		if rootDir, helmErr = lab.RepoRoot(); helmErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		helmBin, helmErr = deploy.FindHelm(ctx, rootDir)
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmBin
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// render renders the chart and fails t on error.
func render(t testing.TB, release, namespace string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t).Template(testCtx(t, time.Minute), release, namespace, set)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(out)
	if err != nil {
		t.Fatalf("decoding rendered chart: %v", err)
	}
	return objs
}

// decodeObjects splits a YAML stream into objects, dropping empty documents.
func decodeObjects(stream []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	var objs []*unstructured.Unstructured
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		raw.Raw = bytes.TrimSpace(raw.Raw)
		if len(raw.Raw) == 0 || string(raw.Raw) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw.Raw); err != nil {
			return nil, fmt.Errorf("decoding %.200s: %w", raw.Raw, err)
		}
		objs = append(objs, u)
	}
}

func find(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// convert decodes an unstructured object into a typed one.
func convert[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	if u == nil {
		t.Fatalf("convert: object is missing")
	}
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &out, true); err != nil {
		t.Fatalf("converting %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return &out
}
