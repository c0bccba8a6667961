-- Word timings of a transcript segment, as Whisper aligned them: a JSON array of
-- {"start_s", "end_s", "text"} in order, times in seconds from the start of the media.
-- NULL when the words were not timed (a model run without word timestamps, a segment
-- stored before this column) or no longer match the text (a corrected segment).
ALTER TABLE transcript_segments ADD COLUMN words jsonb
    CHECK (words IS NULL OR jsonb_typeof(words) = 'array');
