package main

import (
	"context"
	"errors"
)

func runBench(ctx context.Context, e env) error {
	return errors.New("not built yet")
}
