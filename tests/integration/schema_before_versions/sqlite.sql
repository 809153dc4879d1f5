CREATE TABLE secrets (
	name VARCHAR(64) NOT NULL, 
	value BLOB NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE sessions (
	id VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_sessions_updated_at ON sessions (updated_at);

CREATE TABLE call_tokens (
	token VARCHAR(64) NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	issued_at DATETIME NOT NULL, 
	spent_at DATETIME, 
	PRIMARY KEY (token), 
	FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE TABLE callers (
	caller_hash VARCHAR(64) NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	PRIMARY KEY (caller_hash), 
	FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE TABLE turns (
	id INTEGER NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	"index" INTEGER NOT NULL, 
	audio BLOB, 
	audio_seconds DOUBLE NOT NULL, 
	transcript TEXT, 
	reply_text TEXT, 
	interrupted BOOLEAN NOT NULL, 
	error TEXT, 
	speech_start DATETIME NOT NULL, 
	speech_end DATETIME NOT NULL, 
	turn_ended_at DATETIME NOT NULL, 
	first_delta_at DATETIME, 
	reply_done_at DATETIME, 
	context JSON, 
	timings JSON, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_turn_index UNIQUE (session_id, "index"), 
	FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX ix_turns_session_id ON turns (session_id);
