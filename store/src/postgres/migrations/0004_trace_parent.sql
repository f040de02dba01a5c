-- The W3C trace context (traceparent) each event was appended in, so an
-- operator can go from the log to the tracing backend and back. Nullable:
-- events appended before it, or without a trace, have none.
ALTER TABLE events ADD COLUMN IF NOT EXISTS trace_parent text;
