//go:build tools

package paymeter

// Google's Go buildpack compiles each function from a main package it
// generates (functions.local/app) that imports the Functions Framework's
// funcframework package, which this module does not import itself. This
// file, never compiled (the tools tag), keeps funcframework's modules in
// go.mod and go.sum, so that the source zip builds with -mod=readonly and no
// network, as `make rehearse` builds it.
import _ "github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
