package main

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// compressedSize is what a registry stores and a node pulls: the manifest,
// the config and the compressed layers.
func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
