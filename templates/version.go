package templates

// Version is the version of the Storks code generator. It is printed by
// protoc-gen-storks --version and recorded in the header of every generated
// file.
const Version = "v0.1.0"

// PluginName is the name of the protoc plugin, as recorded in the header of
// every generated file.
const PluginName = "protoc-gen-storks"

// FileSuffix is appended to a .proto file's generated-filename prefix (the
// path protoc-gen-go uses, minus ".pb.go") to name the Storks output file.
const FileSuffix = ".storks.go"

// Import paths the generated code refers to.
const (
	contextPackage = "context"
	ioPackage      = "io"
	runtimePackage = "github.com/storks-rpc/storks/runtime"
)

// runtimeImportName is the name generated files import runtimePackage by:
// the package is named runtime (after its directory) but programs call it
// storks, so that it does not clash with Go's own runtime package.
const runtimeImportName = "storks"

// runtimeSupportConst is the runtime constant generated code references to
// fail compilation against a runtime too old for it. Bump it (and add the
// constant to runtime) when generated code starts to need something new from
// the runtime.
const runtimeSupportConst = "SupportPackageIsVersion4"
