CREATE TABLE secrets (
	name VARCHAR(64) NOT NULL, 
	value BYTEA NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE sessions (
	id VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_sessions_updated_at ON sessions (updated_at);

CREATE TABLE call_tokens (
	token VARCHAR(64) NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	issued_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	spent_at TIMESTAMP WITH TIME ZONE, 
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
	id SERIAL NOT NULL, 
	session_id VARCHAR(64) NOT NULL, 
	index INTEGER NOT NULL, 
	audio BYTEA, 
	audio_seconds DOUBLE PRECISION NOT NULL, 
	transcript TEXT, 
	reply_text TEXT, 
	interrupted BOOLEAN NOT NULL, 
	error TEXT, 
	speech_start TIMESTAMP WITH TIME ZONE NOT NULL, 
	speech_end TIMESTAMP WITH TIME ZONE NOT NULL, 
	turn_ended_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	first_delta_at TIMESTAMP WITH TIME ZONE, 
	reply_done_at TIMESTAMP WITH TIME ZONE, 
	context JSON, 
	timings JSON, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_turn_index UNIQUE (session_id, index), 
	FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX ix_turns_session_id ON turns (session_id);
