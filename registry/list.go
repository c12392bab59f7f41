package registry

import (
	"maps"
	"slices"
	"strings"
)

// sortByID sorts list by instance ID, the order every list is returned in.
func sortByID(list []Instance) {
	slices.SortFunc(list, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
}

// cloneList deep-copies list. The result is never nil, so an empty list
// is distinguishable from "no list" when debugging.
func cloneList(list []Instance) []Instance {
	out := make([]Instance, len(list))
	for i, in := range list {
		out[i] = in.Clone()
	}
	return out
}

// sameInstance reports whether a and b are equal field by field. A nil and an
// empty metadata map are equal.
func sameInstance(a, b Instance) bool {
	return a.Key == b.Key && a.ID == b.ID && a.Addr == b.Addr &&
		a.Weight == b.Weight && maps.Equal(a.Metadata, b.Metadata)
}

// sameList reports whether a and b hold the same instances in the same order.
func sameList(a, b []Instance) bool {
	return slices.EqualFunc(a, b, sameInstance)
}
