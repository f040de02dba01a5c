-- An erased key keeps its name: its row stays without its secret (a
-- tombstone), so no key is ever made again under the name of someone
-- erased. Whatever is sealed under that name afterwards (a retried
-- command's append that the log recognises and never stores, say) is
-- sealed under a key that is never kept: unreadable from the start.
ALTER TABLE person_keys ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE person_keys ADD COLUMN IF NOT EXISTS erased_at timestamptz;
