-- Where each process serves its Prometheus metrics, for the control plane's HTTP service
-- discovery (`GET /api/v1/prometheus/targets`): workers record the address they bound
-- (the actual port when configured with :0), and schedulers, which had no row, get one.
ALTER TABLE workers ADD COLUMN metrics_addr text;

CREATE TABLE schedulers (
    id            uuid PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    version       text        NOT NULL,
    metrics_addr  text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

CREATE INDEX schedulers_seen_idx ON schedulers (last_seen_at DESC);

