//! Organization members, per-project role overrides and invitations by link, shared by the
//! API and the web UI. Rules: Admins and Owners manage members; nobody grants a role above
//! their own; only an Owner grants, changes or removes Owner; the last Owner stays.

use store::{Invitation, Member, Role};

use crate::{AppState, auth};

/// How long an invitation link works.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Why a member change is refused.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The caller's organization role is too low.
    #[error("managing members needs the Admin role or higher")]
    NotAdmin,
    /// Owner grants and changes need an Owner.
    #[error("only an Owner can grant, change or remove the Owner role")]
    OwnerOnly,
    /// Roles above the caller's own.
    #[error("you cannot grant a role above your own")]
    AboveOwnRole,
    /// The organization would have no Owner.
    #[error("the organization must keep at least one Owner")]
    LastOwner,
    /// No such member / project.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Bad input.
    #[error("{0}")]
    Invalid(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

fn owners(members: &[Member]) -> usize {
    members.iter().filter(|m| m.role == Role::Owner).count()
}

/// Changes a member's organization role and/or scope.
pub async fn update_member(
    state: &AppState,
    org_id: i64,
    caller: Role,
    user_id: i64,
    role: Option<Role>,
    all_projects: Option<bool>,
) -> Result<Member, MemberError> {
    if caller < Role::Admin {
        return Err(MemberError::NotAdmin);
    }
    let members = state.store().members(org_id).await?;
    let target = members
        .iter()
        .find(|m| m.user_id == user_id)
        .ok_or(MemberError::NotFound("member"))?;
    if let Some(role) = role {
        if role > caller {
            return Err(MemberError::AboveOwnRole);
        }
        if (role == Role::Owner || target.role == Role::Owner) && caller < Role::Owner {
            return Err(MemberError::OwnerOnly);
        }
        if target.role == Role::Owner && role != Role::Owner && owners(&members) == 1 {
            return Err(MemberError::LastOwner);
        }
        state.store().set_member(org_id, user_id, role).await?;
    }
    if let Some(all) = all_projects {
        if target.role == Role::Owner && caller < Role::Owner {
            return Err(MemberError::OwnerOnly);
        }
        state.store().set_member_scope(org_id, user_id, all).await?;
    }
    state
        .store()
        .members(org_id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or(MemberError::NotFound("member"))
}

/// Removes a member from the organization.
pub async fn remove_member(
    state: &AppState,
    org_id: i64,
    caller: Role,
    user_id: i64,
) -> Result<(), MemberError> {
    if caller < Role::Admin {
        return Err(MemberError::NotAdmin);
    }
    let members = state.store().members(org_id).await?;
    let target = members
        .iter()
        .find(|m| m.user_id == user_id)
        .ok_or(MemberError::NotFound("member"))?;
    if target.role == Role::Owner {
        if caller < Role::Owner {
            return Err(MemberError::OwnerOnly);
        }
        if owners(&members) == 1 {
            return Err(MemberError::LastOwner);
        }
    }
    state.store().remove_member(org_id, user_id).await?;
    Ok(())
}

/// Sets or clears a member's role override in one project of the organization.
pub async fn set_override(
    state: &AppState,
    org_id: i64,
    caller: Role,
    project_id: i64,
    user_id: i64,
    role: Option<Role>,
) -> Result<(), MemberError> {
    if caller < Role::Admin {
        return Err(MemberError::NotAdmin);
    }
    if role.is_some_and(|r| r > caller) {
        return Err(MemberError::AboveOwnRole);
    }
    if role == Some(Role::Owner) {
        return Err(MemberError::Invalid(
            "Owner is an organization role, not a project role",
        ));
    }
    let project = state
        .store()
        .project(project_id)
        .await?
        .filter(|p| p.org_id == org_id)
        .ok_or(MemberError::NotFound("project"))?;
    if state.store().member_role(org_id, user_id).await?.is_none() {
        return Err(MemberError::NotFound("member"));
    }
    state
        .store()
        .set_project_role(project.id, user_id, role)
        .await?;
    Ok(())
}

/// Creates an invitation; returns it and its one-time token (the link is `/invite/TOKEN`).
pub async fn invite(
    state: &AppState,
    org_id: i64,
    caller: Role,
    caller_id: i64,
    email: &str,
    role: Role,
    project_id: Option<i64>,
) -> Result<(Invitation, String), MemberError> {
    if caller < Role::Admin {
        return Err(MemberError::NotAdmin);
    }
    if role > caller {
        return Err(MemberError::AboveOwnRole);
    }
    if role == Role::Owner && project_id.is_some() {
        return Err(MemberError::Invalid(
            "Owner is an organization role, not a project role",
        ));
    }
    crate::check_credentials(email, "0123456789")
        .map_err(|_| MemberError::Invalid("the email address is not valid"))?;
    if let Some(pid) = project_id {
        state
            .store()
            .project(pid)
            .await?
            .filter(|p| p.org_id == org_id)
            .ok_or(MemberError::NotFound("project"))?;
    }
    let token = auth::random_token(32);
    let inv = state
        .store()
        .create_invitation(
            org_id,
            email,
            role,
            project_id,
            &auth::token_hash(&token),
            caller_id,
            store::now_ms() + INVITATION_TTL_MS,
        )
        .await?;
    Ok((inv, token))
}
