package auth_test

import (
	"context"
	"fmt"
	"net"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"github.com/storks-rpc/storks/runtime/auth"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A provider that admits only callers with the shared token, and two
// consumers: one with the token, one without.
func Example() {
	const token = "correct-horse-battery-staple" // in real code: from a secret store

	reg := registry.NewInproc()
	defer reg.Close()

	check, err := auth.NewServerInterceptor(auth.WithTokens(token))
	if err != nil {
		panic(err)
	}
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithServerInterceptor(check))
	if _, err := srv.Export(&whoDesc, &who{}); err != nil {
		panic(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(lis)
	defer srv.Close()

	send, err := auth.NewClientInterceptor(token)
	if err != nil {
		panic(err)
	}
	for _, opts := range [][]storks.ClientOption{
		{storks.WithRegistry(reg), storks.WithClientInterceptor(send)},
		{storks.WithRegistry(reg)},
	} {
		cli, err := storks.NewClient(opts...)
		if err != nil {
			panic(err)
		}
		ref, err := cli.Refer(context.Background(), whoDesc.ServiceName)
		if err != nil {
			panic(err)
		}
		out := new(wrapperspb.StringValue)
		if err := ref.Invoke(context.Background(), whoMethod, wrapperspb.String("x"), out); err != nil {
			fmt.Println(storks.CodeOf(err))
		} else {
			fmt.Println(out.GetValue())
		}
		cli.Close()
	}
	// Output:
	// hello
	// Unauthenticated
}
