package discovery

import "log/slog"

const (
	levelDebug = slog.LevelDebug
	levelWarn  = slog.LevelWarn
)

func strAttr(k, v string) slog.Attr { return slog.String(k, v) }

func errAttr(err error) slog.Attr {
	if err == nil {
		return slog.String("err", "")
	}
	return slog.String("err", err.Error())
}
