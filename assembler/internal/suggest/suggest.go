// Package suggest finds the known names closest to a misspelt one, for "did you mean" hints.
package suggest

import (
	"sort"
	"strings"
)

// Closest returns up to max candidates within a small edit distance of name (case-insensitive, with
// '-' and '_' treated as equal), closest first and alphabetical among equals. A candidate that
// starts with name, or contains it, counts as close too, so "virtio" suggests "virtio_blk".
func Closest(name string, candidates []string, max int) []string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	n := norm(name)
	limit := 2
	if len(n) > 8 {
		limit = 3
	}
	type scored struct {
		s string
		d int
	}
	var hits []scored
	seen := map[string]bool{}
	for _, c := range candidates {
		if seen[c] {
			continue
		}
		seen[c] = true
		nc := norm(c)
		d := Distance(n, nc)
		switch {
		case d <= limit:
		case len(n) >= 3 && strings.Contains(nc, n):
			d = limit + 1 + len(nc) - len(n)
		default:
			continue
		}
		hits = append(hits, scored{c, d})
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].d != hits[j].d {
			return hits[i].d < hits[j].d
		}
		return hits[i].s < hits[j].s
	})
	if len(hits) > max {
		hits = hits[:max]
	}
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.s
	}
	return out
}

// Distance is the Levenshtein edit distance between a and b, counting bytes.
func Distance(a, b string) int { return DistanceAtMost(a, b, max(len(a), len(b))) }

// DistanceAtMost is Distance, or limit+1 as soon as it is sure to exceed limit (a cheap bound
// for scanning many names).
func DistanceAtMost(a, b string, limit int) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		low := cur[0]
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c = 1 + min(prev[j-1], prev[j], cur[j-1])
			}
			cur[j] = c
			low = min(low, c)
		}
		if low > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
