// Module image builds meshtrust-controller's OCI image without a container
// engine (`make image`) and tests the result. It is apart from the product's
// module because go-containerregistry would upgrade golang.org/x/sys, sync
// and oauth2 under the controller.
module github.com/meshtrust/meshtrust/deploy/image

go 1.26.0

require (
	github.com/google/go-containerregistry v0.22.1
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
