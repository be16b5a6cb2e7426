package authority_test

import "context"

var ctx = context.Background()
