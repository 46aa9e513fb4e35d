-- Foundation: the offsets every projector commits in the same transaction as its rows,
-- and the quarantine for events a projector could not understand.

CREATE TABLE IF NOT EXISTS projection_offsets (
    projection  text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (projection, topic, partition)
);

CREATE TABLE IF NOT EXISTS projection_quarantine (
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    event_type  text,
    schema_version integer,
    error       text        NOT NULL,
    raw_value   bytea,
    PRIMARY KEY (projection, topic, partition, "offset")
);
