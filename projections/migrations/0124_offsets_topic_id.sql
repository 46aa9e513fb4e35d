-- The Kafka topic id (a UUID; a topic deleted and created again gets a new one) of the
-- log each stored offset was taken in. A projector compares it with the topic's id at
-- every (re)assignment: a topic created again whose new log has grown past the stored
-- offset is in range by offsets alone, but not the same log (OffsetsOutOfRange: held
-- until `tradetape rebuild`). NULL on rows stored before this column: the projector
-- records the topic's id of the day on first sight (docs/projections.md).
ALTER TABLE projection_offsets ADD COLUMN IF NOT EXISTS topic_id text;
