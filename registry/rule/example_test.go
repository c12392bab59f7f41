package rule_test

import (
	"context"
	"fmt"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

// Take one provider out of rotation, give another a larger share of the
// traffic, then revert both: what `storks provider disable` and `storks
// provider weight` do.
func Example() {
	ctx := context.Background()
	reg := registry.NewInproc() // any registry that is a registry.RuleStore
	defer reg.Close()
	key := registry.ServiceKey{Service: "helloworld.Greeter", Version: "v1"}

	set, err := rule.Update(ctx, reg, key, func(s *rule.Set) error {
		s.Disable(rule.Match{Addr: "10.0.0.7:9000"})
		s.SetWeight(rule.Match{Metadata: map[string]string{"zone": "b"}}, 800)
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	doc, _ := set.Marshal()
	fmt.Print(string(doc))

	// Bad rules are refused before they reach the registry.
	_, err = rule.Parse([]byte(`{"version": 1, "overrides": [{"match": {}, "weight": 5}]}`))
	fmt.Println(err)

	// Reverting both leaves nothing: the document is deleted.
	_, _ = rule.Update(ctx, reg, key, func(s *rule.Set) error {
		s.Enable(rule.Match{Addr: "10.0.0.7:9000"})
		s.SetWeight(rule.Match{Metadata: map[string]string{"zone": "b"}}, -1)
		return nil
	})
	_, err = reg.GetRule(ctx, key)
	fmt.Println(err)
	// Output:
	// {
	//   "version": 1,
	//   "overrides": [
	//     {
	//       "match": {
	//         "addr": "10.0.0.7:9000"
	//       },
	//       "disabled": true
	//     },
	//     {
	//       "match": {
	//         "metadata": {
	//           "zone": "b"
	//         }
	//       },
	//       "weight": 800
	//     }
	//   ]
	// }
	// rule: overrides[0].match: must set id, addr or metadata (an empty match would select every provider)
	// registry: no rule for this service key
}
