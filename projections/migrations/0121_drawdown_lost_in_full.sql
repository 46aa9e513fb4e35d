-- Projection drawdown, fold version 3: the peak after an account's kill-switch release
-- (risk.config's KillSwitchReleased, folded beside risk.decisions) and the whole peak
-- lost (DRAWDOWN_BRAKE v7, v8), as the engine measures them; see docs/projections.md.
-- `peaks` keeps the recorded peaks as suffix maxima ([[event time, peak], ...]) so the
-- peak after a release does not depend on how the two topics interleave;
-- `recorded_peak` is the peak last recorded on risk.decisions (what the history rows
-- compare with). The lines above '-- @body' name the live schema.
SET LOCAL search_path TO proj_drawdown, public;
-- @body
ALTER TABLE drawdowns
    ADD COLUMN lost_in_full  boolean NOT NULL DEFAULT false,
    ADD COLUMN wiped_at      timestamptz,
    ADD COLUMN recorded_peak numeric,
    ADD COLUMN peaks         jsonb NOT NULL DEFAULT '[]';

ALTER TABLE drawdown_events ADD COLUMN lost_in_full boolean NOT NULL DEFAULT false;

CREATE TABLE releases (
    account          text PRIMARY KEY,
    released_at      timestamptz NOT NULL,
    release_event_id uuid NOT NULL,
    released_by      text NOT NULL,
    reason           text NOT NULL
);
