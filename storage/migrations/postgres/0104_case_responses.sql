-- The maintenance firm's responses to a case (see ../sqlite/0105_case_responses.sql).
CREATE TABLE case_responses (
    case_id  BIGINT NOT NULL,
    n        BIGINT NOT NULL,
    response TEXT   NOT NULL,
    actor    TEXT   NOT NULL,
    at       BIGINT NOT NULL,
    body     TEXT   NOT NULL,
    PRIMARY KEY (case_id, n)
);
CREATE FUNCTION case_responses_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_responses is append-only';
END $$;
CREATE TRIGGER case_responses_no_change BEFORE UPDATE OR DELETE ON case_responses
    FOR EACH ROW EXECUTE FUNCTION case_responses_append_only();
