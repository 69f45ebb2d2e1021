-- Access control beyond the organization role: a member sees all projects (all_projects = 1)
-- or only those listed in project_roles, and project_roles can override the role per project.
-- Invitations by link (the token is stored hashed).
ALTER TABLE memberships ADD COLUMN all_projects INTEGER NOT NULL DEFAULT 1;
CREATE TABLE project_roles (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE invitations (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    all_projects INTEGER NOT NULL,
    project_id BIGINT REFERENCES projects(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_by BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT
);
