package status

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Export writes each key of the cacerts Secret to dir/<context>/<key>, the
// way a Secret volume mounts it for istiod. The files include the CA's
// private key, so directories are 0700 and files 0600.
func Export(dir, context string, s *corev1.Secret) ([]string, error) {
	if s == nil {
		return nil, nil
	}
	target := filepath.Join(dir, DirName(context))
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("exporting cacerts of %s: %w", context, err)
	}
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var written []string
	for _, k := range keys {
		if !safeName(k) {
			return written, fmt.Errorf("exporting cacerts of %s: key %q cannot be a file name", context, k)
		}
		p := filepath.Join(target, k)
		if err := os.WriteFile(p, s.Data[k], 0o600); err != nil {
			return written, fmt.Errorf("exporting cacerts of %s: %w", context, err)
		}
		written = append(written, p)
	}
	return written, nil
}

func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && filepath.Base(s) == s && !filepath.IsAbs(s)
}

// DirName turns a context name into a directory name: context names such as
// EKS ARNs hold slashes and colons.
func DirName(context string) string {
	b := []byte(context)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			b[i] = '_'
		}
	}
	if s := string(b); safeName(s) {
		return s
	}
	return "_" + string(b)
}
