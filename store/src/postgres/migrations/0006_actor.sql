-- Who caused each event: the verified caller of the command (role and
-- subject, never personal data) or `system:{process manager}`, so an audit
-- trail can say who did what. Nullable: events appended before it have none.
ALTER TABLE events ADD COLUMN IF NOT EXISTS actor text;
