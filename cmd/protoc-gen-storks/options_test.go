package main

import (
	"slices"
	"strings"
	"testing"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/storks-rpc/storks/internal/gen"
)

// optionFiles are the test protos for the option tests: other.proto (a
// service, importing types.proto from another Go package) and types.proto.
var optionFiles = []string{"other/other.proto", "types/v1/types.proto"}

// generateWith runs the plugin on optionFiles with param and returns the
// response.
func generateWith(t *testing.T, param string) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	resp, _ := gen.RunStorks(gen.NewRequest(optionFiles, param, compile(t, protoDir, optionFiles).Protos))
	return resp
}

// TestOptions checks that the paths=, module= and M options place (and
// name the package of) the .storks.go file exactly as protoc-gen-go's.
func TestOptions(t *testing.T) {
	tests := []struct {
		param     string
		wantName  string
		wantInGo  []string // substrings of the generated file
		wantNotGo []string
	}{{
		param:    "",
		wantName: goldenModule + "/other/gopkg/other.storks.go",
		wantInGo: []string{"package otherpb\n", `typesv1 "` + goldenModule + `/types/v1"`},
	}, {
		param:    "paths=import",
		wantName: goldenModule + "/other/gopkg/other.storks.go",
	}, {
		param:    "paths=source_relative",
		wantName: "other/other.storks.go",
	}, {
		param:    "module=" + goldenModule,
		wantName: "other/gopkg/other.storks.go",
	}, {
		param:    "module=github.com/storks-rpc/storks",
		wantName: "cmd/protoc-gen-storks/testdata/golden/other/gopkg/other.storks.go",
	}, {
		// M overrides go_package, both for the file generated and for the
		// packages it imports.
		param:     "Mother/other.proto=example.com/mapped/thing;thingpb,Mtypes/v1/types.proto=example.com/t;tpb",
		wantName:  "example.com/mapped/thing/other.storks.go",
		wantInGo:  []string{"package thingpb\n", `tpb "example.com/t"`, "*tpb.Request"},
		wantNotGo: []string{goldenModule},
	}, {
		param:    "Mother/other.proto=example.com/mapped/thing;thingpb,module=example.com/mapped",
		wantName: "thing/other.storks.go",
	}, {
		// Without ";name", M keeps the package name of go_package.
		param:    "paths=source_relative,Mother/other.proto=example.com/mapped/thing",
		wantName: "other/other.storks.go",
		wantInGo: []string{"package otherpb\n"},
	}}
	for _, tt := range tests {
		t.Run(tt.param, func(t *testing.T) {
			files := responseFiles(t, generateWith(t, tt.param))
			names := sortedKeys(files)
			if !slices.Equal(names, []string{tt.wantName}) {
				t.Fatalf("generated %q, want [%q]", names, tt.wantName)
			}
			content := files[tt.wantName]
			for _, s := range tt.wantInGo {
				if !strings.Contains(content, s) {
					t.Errorf("generated file does not contain %q:\n%s", s, content)
				}
			}
			for _, s := range tt.wantNotGo {
				if strings.Contains(content, s) {
					t.Errorf("generated file contains %q:\n%s", s, content)
				}
			}
		})
	}
}

// TestOptionErrors checks that bad parameters fail generation with protoc's
// usual error response instead of generating anything.
func TestOptionErrors(t *testing.T) {
	tests := []struct{ param, wantErr string }{
		{"paths=nowhere", `unknown path type "nowhere"`},
		{"module=example.com/unrelated", `does not match prefix "example.com/unrelated"`},
		{"no_such_option=1", "no_such_option"},
	}
	for _, tt := range tests {
		t.Run(tt.param, func(t *testing.T) {
			resp := generateWith(t, tt.param)
			if resp.Error == nil {
				t.Fatalf("no error; generated %d files", len(resp.File))
			}
			if !strings.Contains(resp.GetError(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", resp.GetError(), tt.wantErr)
			}
		})
	}
}

// TestSupportedFeatures checks that the plugin declares what protoc-gen-go
// declares (proto3 optional, editions up to the same edition), so that protoc
// accepts exactly the files protoc-gen-go accepts.
func TestSupportedFeatures(t *testing.T) {
	resp := generateWith(t, "")
	if resp.Error != nil {
		t.Fatal(resp.GetError())
	}
	if got, want := resp.GetSupportedFeatures(), gengo.SupportedFeatures; got != want {
		t.Errorf("supported features %b, want %b", got, want)
	}
	if resp.GetSupportedFeatures()&uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL) == 0 {
		t.Error("proto3 optional not supported")
	}
	if got, want := resp.GetMinimumEdition(), int32(gengo.SupportedEditionsMinimum); got != want {
		t.Errorf("minimum edition %d, want %d", got, want)
	}
	if got, want := resp.GetMaximumEdition(), int32(gengo.SupportedEditionsMaximum); got != want {
		t.Errorf("maximum edition %d, want %d", got, want)
	}
}
