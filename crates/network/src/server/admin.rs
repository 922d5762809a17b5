//! The operator's service (`Admin`): organisations, credentials,
//! activation codes, reporters, statistics, snapshots.

use super::*;

/// The operators' service.
pub struct AdminService<S: Store>(pub Arc<Shared<S>>);

#[tonic::async_trait]
impl<S: Store> Admin for AdminService<S> {
    async fn create_organisation(
        &self,
        request: Request<v1::CreateOrganisationRequest>,
    ) -> Result<Response<v1::CreateOrganisationResponse>, Status> {
        self.0.operator(&request)?;
        let r = request.into_inner();
        let plan = match v1::Plan::try_from(r.plan) {
            Ok(v1::Plan::Trial) => Plan::Trial,
            Ok(v1::Plan::Feed) => Plan::Feed,
            Ok(v1::Plan::Subscription | v1::Plan::Unspecified) | Err(_) => Plan::Subscription,
        };
        if plan == Plan::Trial && r.expires_at == 0 {
            return Err(Status::invalid_argument("a trial needs an expiry"));
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::CreateOrganisation { name: r.name, plan, expires_at: r.expires_at, reply };
        self.0.writer.send(command).await.map_err(store_status)?;
        let (org, credential) =
            answer.await.map_err(|_| Status::unavailable("the node is shutting down"))?.map_err(admin_status)?;
        Ok(Response::new(v1::CreateOrganisationResponse { organisation: Some(wire_org(&org)), credential }))
    }

    async fn list_organisations(
        &self,
        request: Request<v1::ListOrganisationsRequest>,
    ) -> Result<Response<v1::ListOrganisationsResponse>, Status> {
        self.0.operator(&request)?;
        let organisations = self.0.engine.organisations().read().all().iter().map(wire_org).collect();
        Ok(Response::new(v1::ListOrganisationsResponse { organisations }))
    }

    async fn set_organisation_status(
        &self,
        request: Request<v1::SetOrganisationStatusRequest>,
    ) -> Result<Response<v1::Organisation>, Status> {
        self.0.operator(&request)?;
        let r = request.into_inner();
        let status = match v1::OrganisationStatus::try_from(r.status) {
            Ok(v1::OrganisationStatus::Active) => OrgStatus::Active,
            Ok(v1::OrganisationStatus::Disabled) => OrgStatus::Disabled,
            _ => return Err(Status::invalid_argument("status must be active or disabled")),
        };
        let (reply, answer) = oneshot::channel();
        self.0.writer.send(Command::SetStatus { name: r.name, status, reply }).await.map_err(store_status)?;
        let org = answer.await.map_err(|_| Status::unavailable("the node is shutting down"))?.map_err(admin_status)?;
        Ok(Response::new(wire_org(&org)))
    }

    async fn issue_activation(
        &self,
        request: Request<v1::IssueActivationRequest>,
    ) -> Result<Response<v1::IssueActivationResponse>, Status> {
        self.0.operator(&request)?;
        let r = request.into_inner();
        let plan = match v1::Plan::try_from(r.plan) {
            Ok(v1::Plan::Unspecified) => None,
            Ok(v1::Plan::Trial) => Some(Plan::Trial),
            Ok(v1::Plan::Subscription) => Some(Plan::Subscription),
            Ok(v1::Plan::Feed) | Err(_) => {
                return Err(Status::invalid_argument("the plan must be trial or subscription"));
            }
        };
        if r.extend_seconds < 0 || r.purchase_url.len() > starling_proto::activation::MAX_URL_BYTES {
            return Err(Status::invalid_argument("a negative extension or a purchase URL over 512 bytes"));
        }
        let grant = writer::Grant {
            plan,
            expires_at: r.expires_at,
            extend_seconds: r.extend_seconds,
            max_mailboxes: r.max_mailboxes,
            purchase_url: r.purchase_url,
        };
        let (reply, answer) = oneshot::channel();
        let command = Command::IssueActivation { name: r.name, grant, signer: self.0.signer.clone(), reply };
        self.0.writer.send(command).await.map_err(store_status)?;
        let (org, code) =
            answer.await.map_err(|_| Status::unavailable("the node is shutting down"))?.map_err(admin_status)?;
        Ok(Response::new(v1::IssueActivationResponse {
            code,
            organisation: Some(wire_org(&org)),
            public_key: self.0.signer.public_key().to_vec(),
        }))
    }

    async fn revoke_activation(
        &self,
        request: Request<v1::RevokeActivationRequest>,
    ) -> Result<Response<v1::Organisation>, Status> {
        self.0.operator(&request)?;
        let name = request.into_inner().name;
        let (reply, answer) = oneshot::channel();
        self.0.writer.send(Command::RevokeActivation { name, reply }).await.map_err(store_status)?;
        let org = answer.await.map_err(|_| Status::unavailable("the node is shutting down"))?.map_err(admin_status)?;
        Ok(Response::new(wire_org(&org)))
    }

    async fn explain(&self, request: Request<v1::ExplainRequest>) -> Result<Response<v1::ExplainResponse>, Status> {
        self.0.operator(&request)?;
        let set = submitted(0, request.get_ref().fingerprints.as_ref())?;
        let assessment = self.0.engine.explain(&set, now()).map_err(store_status)?;
        let organisations = self.0.engine.organisations().read();
        let org_name = |id: u32| organisations.get(id).map_or_else(|| format!("#{id}"), |o| o.name.clone());
        let reports = assessment
            .votes
            .iter()
            .map(|(vote, record, trust)| v1::ReportDetail {
                organisation: org_name(vote.org),
                reporter: vote.reporter.short(),
                class: wire_class(vote.class).into(),
                at: record.at,
                trust: *trust,
                weight: vote.weight,
            })
            .collect();
        let entries = assessment
            .matched
            .iter()
            .map(|m| v1::MatchedEntry {
                id: m.id.0.to_vec(),
                kind: wire_kind(m.kind).into(),
                similarity: m.similarity.map_or(1.0, |s| s.jaccard),
                containment: m.similarity.map_or(1.0, |s| s.containment),
                first_seen: m.entry.first_seen,
                last_seen: m.entry.last_seen,
            })
            .collect();
        Ok(Response::new(v1::ExplainResponse { verdict: Some(verdict(&assessment)), entries, reports }))
    }

    async fn stats(&self, request: Request<v1::StatsRequest>) -> Result<Response<v1::StatsResponse>, Status> {
        self.0.operator(&request)?;
        let stats = stats(&self.0).map_err(store_status)?;
        Ok(Response::new(stats))
    }

    async fn snapshot(&self, request: Request<v1::SnapshotRequest>) -> Result<Response<v1::SnapshotResponse>, Status> {
        self.0.operator(&request)?;
        let shared = self.0.clone();
        // A long read of the whole store: off the async workers.
        let (path, tables) = tokio::task::spawn_blocking(move || shared.engine.store().snapshot())
            .await
            .map_err(|e| Status::internal(format!("the snapshot task failed: {e}")))?
            .map_err(|e| {
                if e.is_transient() {
                    Status::unavailable(e.to_string())
                } else {
                    Status::failed_precondition(e.to_string())
                }
            })?;
        tracing::info!(path = %path.display(), "store snapshot written");
        Ok(Response::new(v1::SnapshotResponse {
            path: path.display().to_string(),
            tables: tables.into_iter().map(|(name, rows)| v1::TableRows { name: name.to_owned(), rows }).collect(),
        }))
    }
}
