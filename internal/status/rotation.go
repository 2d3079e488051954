package status

import (
	"github.com/meshtrust/meshtrust/internal/rotation"
)

// rotationOf reads the record `meshtrust vault rotate-root` keeps on the
// cluster's source Certificate: the rotation phase it last verified there.
func rotationOf(in Input, src *Source) (*rotation.Record, string) {
	if src == nil {
		return nil, ""
	}
	crt := sourceCertificate(in, src)
	if crt == nil {
		return nil, ""
	}
	r, err := rotation.ParseRecord(crt.Annotations[rotation.RecordAnnotation])
	if err != nil {
		return nil, err.Error()
	}
	return r, ""
}

// rotationLabel is the ROTATION column.
func rotationLabel(c Cluster) string {
	if c.Rotation == nil {
		return "-"
	}
	return c.Rotation.Label()
}
