-- The maintenance firm's responses to a case (acknowledged, arrived on site), outside
-- the five-step loop: who, when, what. Append-only, as case_steps. Cases saved before
-- responses existed have none. n counts a case's responses from 0.
CREATE TABLE case_responses (
    case_id  INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    response TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    body     TEXT    NOT NULL,
    PRIMARY KEY (case_id, n)
);
CREATE TRIGGER case_responses_no_update BEFORE UPDATE ON case_responses
BEGIN SELECT RAISE(ABORT, 'case_responses is append-only'); END;
CREATE TRIGGER case_responses_no_delete BEFORE DELETE ON case_responses
BEGIN SELECT RAISE(ABORT, 'case_responses is append-only'); END;
