// Command image builds meshtrust-controller's OCI image from a static
// binary, without a container engine, and writes it as an OCI image layout:
//
//	go run ./deploy/image -binary bin/image-build/meshtrust-controller \
//	  -out bin/image -version 0.2.0 -revision <commit> -created <RFC 3339>
//
// `make image` builds the binary and runs this. Push the result with any
// OCI tool, e.g. `crane push bin/image <registry>/meshtrust-controller:0.2.0`
// or `skopeo copy oci:bin/image:0.2.0 docker://<registry>/...`.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	var o Options
	var out, created string
	flag.StringVar(&o.Binary, "binary", "", "static meshtrust-controller binary")
	flag.StringVar(&out, "out", "", "directory of the OCI image layout to (re)write")
	flag.StringVar(&o.Version, "version", "", "image version: the label and the tag")
	flag.StringVar(&o.Revision, "revision", "unknown", "source revision for the label")
	flag.StringVar(&created, "created", "", "creation time, RFC 3339 (e.g. the commit time)")
	flag.StringVar(&o.OS, "os", "linux", "the binary's GOOS")
	flag.StringVar(&o.Architecture, "arch", runtime.GOARCH, "the binary's GOARCH")
	flag.Parse()
	if err := run(o, out, created); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o Options, out, created string) error {
	if o.Binary == "" || out == "" || o.Version == "" {
		return fmt.Errorf("-binary, -out and -version are required")
	}
	t, err := time.Parse(time.RFC3339, created)
	if err != nil {
		return fmt.Errorf("invalid -created %q: %w", created, err)
	}
	o.Created = t.UTC()
	img, err := Build(o)
	if err != nil {
		return err
	}
	if err := WriteLayout(out, img, o.Version); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	size, err := compressedSize(img)
	if err != nil {
		return err
	}
	fmt.Printf("image: %s %s:%s (%s/%s), %.1f MB compressed\n", out, "meshtrust-controller", o.Version, o.OS, o.Architecture, float64(size)/1e6)
	fmt.Printf("image: digest %s\n", digest)
	return nil
}
